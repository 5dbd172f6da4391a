use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};
use containarium::error;

fn main() {
    // Help is coloured only where ui says escapes may go (NO_COLOR, a
    // terminal, TERM), never by clap's own reading of CLICOLOR_FORCE.
    let color = if containarium::ui::styled(&std::io::stdout()) {
        clap::ColorChoice::Auto
    } else {
        clap::ColorChoice::Never
    };
    let parsed = containarium::cli::Cli::command()
        .color(color)
        .try_get_matches()
        .and_then(|matches| containarium::cli::Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        // `containarium keys`: what there is to choose from, as clap would
        // show it, still a usage error.
        Err(err) if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", err.render());
            std::process::exit(error::REFUSED);
        }
        Err(err) => {
            // One line, like every other refusal: clap's message up to its
            // usage block, without the tip.
            eprintln!("{}", error::one_line(&err.render().to_string()));
            std::process::exit(error::REFUSED);
        }
    };
    // Output a reader left (`| head`) is dropped; any other failure to
    // write it fails the run.
    let result = cli.run().and_then(|()| {
        containarium::ui::stdout_result()
            .map_err(|err| anyhow::anyhow!("writing standard output: {err}"))
    });
    if let Err(err) = &result {
        if error::exit_code(err) == error::REFUSED {
            // The refusal itself, even when a step's context wraps it (a
            // refusal found mid-apply, after the steps before were undone).
            let refusal = err
                .chain()
                .find(|cause| cause.is::<error::Refused>())
                .map_or_else(|| err.to_string(), ToString::to_string);
            eprintln!("error: {refusal}");
        } else {
            eprintln!("error: {err:#}");
        }
    }
    // A signal stops a plan between steps (after undoing it) or `apply`
    // between users, and the exit status says so, whatever the run returned.
    if let Some(signal) = containarium::plan::interrupted_by() {
        if result.is_ok() {
            eprintln!("error: interrupted by {signal}: not all was done (see above); run it again");
        }
        std::process::exit(error::signalled(signal));
    }
    if let Err(err) = &result {
        std::process::exit(error::exit_code(err));
    }
}
