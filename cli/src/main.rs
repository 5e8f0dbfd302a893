//! `vst`: the command-line tool. The only crate that prints, reads the
//! environment or exits. A thin layer: arguments (`args.rs`), finding and
//! opening the repository (`workspace.rs`), output (`output.rs`), and one
//! module per command group (`commands/`, `mount.rs`, `remote.rs`), each
//! a call into the library.

mod args;
mod commands;
mod config;
mod mount;
mod output;
mod remote;
mod rev;
mod watch;
mod workspace;

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Parser;
use vst_cas::Access;

use crate::args::{Cli, Command};
use crate::commands::{history, maintenance, merge, refs, worktree};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`vst log | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("vst: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    if let Some(code) = mount::in_writable_mount(cli)? {
        return Ok(code);
    }
    match &cli.command {
        Command::Init { path, store, cache_mib } => {
            worktree::init(cli, path.as_deref(), store.as_deref(), *cache_mib)
        }
        Command::Commit { message, allow_empty, author, paths, scan, allow_large } => {
            worktree::commit(cli, message, *allow_empty, author.clone(), paths, *scan, *allow_large)
        }
        Command::Status { paths, scan, short } => worktree::status(cli, paths, *scan, *short),
        Command::Watch(args) => watch::watch_cmd(cli, args),
        Command::Config(args) => config::config_cmd(cli, args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut command = Cli::command();
            // Into memory first: the generator panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "vst", &mut script);
            if cli.json {
                let script = String::from_utf8_lossy(&script);
                let value = serde_json::json!({ "shell": shell.to_string(), "script": script });
                writeln!(std::io::stdout(), "{value}")?;
            } else {
                std::io::stdout().write_all(&script)?;
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            if cli.json {
                let value = serde_json::json!({ "man": String::from_utf8_lossy(&page) });
                println!("{value}");
            } else {
                std::io::Write::write_all(&mut std::io::stdout(), &page)?;
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Log { rev, max, oneline, paths } => {
            history::log(cli, rev.as_deref(), *max, *oneline, paths)
        }
        Command::Mount(args) => {
            let ws = workspace::find(cli)?;
            if let Ok(point) = args.mountpoint.canonicalize()
                && point.starts_with(&ws.root)
            {
                bail!(
                    "mount point {} is inside the working tree {}: `vst commit` would snapshot the mount; mount outside it",
                    args.mountpoint.display(),
                    ws.root.display()
                );
            }
            let repo = workspace::open(&ws, Access::ReadOnly)?;
            // With --json, the text is kept back and one value said at the
            // end (once mounted, with --background; once unmounted, else).
            let quiet = cli.quiet || cli.json;
            let code = if args.write {
                let start = mount::writable_start(&repo, args)?;
                drop(repo);
                mount::mount_writable(&ws.repo_dir, start, args, quiet)?
            } else {
                let target = mount::target(&repo, args)?;
                mount::mount(repo, target, args, quiet)?
            };
            if cli.json {
                let value = serde_json::json!({
                    "mountpoint": args.mountpoint,
                    "write": args.write,
                    "mounted": args.background,
                });
                println!("{value}");
            }
            Ok(code)
        }
        Command::Umount(args) => {
            let code = mount::umount(args, cli.quiet || cli.json)?;
            if cli.json {
                println!("{}", serde_json::json!({ "unmounted": args.mountpoint }));
            }
            Ok(code)
        }
        Command::Remote { action } => {
            remote::remote_cmd(&workspace::find(cli)?.repo_dir, action, cli.json, cli.quiet)
        }
        Command::Push(args) => remote::push_cmd(cli, &workspace::find(cli)?, args),
        Command::Pull(args) => remote::pull_cmd(cli, &workspace::find(cli)?, args),
        Command::Fetch(args) => remote::fetch_cmd(cli, &workspace::find(cli)?, args),
        Command::Clone(args) => remote::clone_cmd(cli, args),
        Command::Ls { spec } => history::ls(cli, spec),
        Command::Cat { spec } => history::cat(cli, spec),
        Command::Show { spec } => history::show(cli, spec.as_deref()),
        Command::Diff { revs, stat, name_status, exit_code, scan, paths } => {
            let style = history::DiffStyle {
                stat: *stat,
                name_status: *name_status,
                exit_code: *exit_code,
            };
            history::diff(cli, revs, style, *scan, paths)
        }
        Command::Restore { paths, source } => worktree::restore(cli, paths, source),
        Command::Reset { rev, hard } => worktree::reset(cli, rev, *hard),
        Command::Switch { name, force } => worktree::switch(cli, name, *force),
        Command::Merge { rev, abort } => merge::merge_cmd(cli, rev.as_deref(), *abort),
        Command::Branch { name, rev, delete, force_delete, remotes } => {
            let delete = match (delete, force_delete) {
                (_, true) => refs::Delete::Force,
                (true, false) => refs::Delete::Merged,
                (false, false) => refs::Delete::No,
            };
            refs::branch(cli, name.as_deref(), rev.as_deref(), delete, *remotes)
        }
        Command::Tag { name, rev, delete, force } => {
            refs::tag(cli, name.as_deref(), rev.as_deref(), *delete, *force)
        }
        Command::Checkout { rev, into, force } => {
            worktree::checkout(cli, rev, into.as_deref(), *force)
        }
        Command::Fsck { read_data } => maintenance::fsck(cli, *read_data),
        Command::Gc { remote: Some(name), grace, .. } => {
            remote::gc_cmd(cli, &workspace::find(cli)?, name, grace.as_deref())
        }
        Command::Gc { dry_run, grace_hours, .. } => maintenance::gc(cli, *dry_run, *grace_hours),
    }
}
