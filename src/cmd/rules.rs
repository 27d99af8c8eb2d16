//! `tocsin rules …`: work with Prometheus rule files.

use std::path::PathBuf;

use clap::Subcommand;

/// Rule-file subcommands.
#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Validate rule files like `promtool check rules`: prints `SUCCESS: N rules found` per
    /// file or every error (file, line:column, group, rule, what is wrong); exits 1 on any error.
    Check {
        /// Rule files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs a rules subcommand; returns the exit code.
pub fn run(cmd: RulesCommand) -> i32 {
    match cmd {
        RulesCommand::Check { files } => {
            let report = tocsin_alerter::rules::check_files(&files);
            print!("{report}");
            if report.success() { 0 } else { 1 }
        }
    }
}
