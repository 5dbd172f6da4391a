use clap::Parser;

fn main() {
    let cli = containarium::cli::Cli::parse();
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
