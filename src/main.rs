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
            eprintln!("error: {err}");
        } else {
            eprintln!("error: {err:#}");
        }
        std::process::exit(code);
    }
}
