use clap::Parser;
use clap::error::ErrorKind;

fn main() {
    let cli = match containarium::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        Err(err) => {
            // One line, like every other refusal: clap's message up to its
            // usage block, without the tip.
            eprintln!(
                "{}",
                containarium::error::one_line(&err.render().to_string())
            );
            std::process::exit(2);
        }
    };
    if let Err(err) = cli.run() {
        let code = containarium::error::exit_code(&err);
        if code == 2 {
            // The refusal itself, even when a step's context wraps it (a
            // refusal found mid-apply, after the steps before were undone).
            let refusal = err
                .chain()
                .find(|cause| cause.is::<containarium::error::Refused>())
                .map_or_else(|| err.to_string(), ToString::to_string);
            eprintln!("error: {refusal}");
        } else {
            eprintln!("error: {err:#}");
        }
        std::process::exit(code);
    }
}
