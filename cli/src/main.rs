//! `metric-loss`: see the library's documentation (metric_loss_cli) and docs/cli.md.

fn main() -> std::process::ExitCode {
    metric_loss_cli::main()
}
