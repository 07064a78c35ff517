//! `ecom`: see `ecom --help`.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ecom::cli::Cli::parse();
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
