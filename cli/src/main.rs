//! `vst`: the command-line tool. The only crate that prints, reads the
//! environment or exits. A thin layer: arguments (`args.rs`), finding and
//! opening the repository (`workspace.rs`), output (`output.rs`), and one
//! module per command group (`commands/`, `mount.rs`, `remote.rs`), each
//! a call into the library.

mod args;
mod commands;
mod mount;
mod output;
mod remote;
mod rev;
mod workspace;

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Parser;
use vst_cas::Access;

use crate::args::{Cli, Command};
use crate::commands::{history, maintenance, refs, worktree};

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
        Command::Commit { message, allow_empty, author, paths } => {
            worktree::commit(cli, message, *allow_empty, author.clone(), paths)
        }
        Command::Status { paths } => worktree::status(cli, paths),
        Command::Log { rev, max } => history::log(cli, rev.as_deref(), *max),
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
            if args.write {
                let start = mount::writable_start(&repo, args)?;
                drop(repo);
                return mount::mount_writable(&ws.repo_dir, start, args, cli.quiet);
            }
            let target = mount::target(&repo, args)?;
            mount::mount(&repo, target, args, cli.quiet)
        }
        Command::Umount(args) => mount::umount(args, cli.quiet),
        Command::Remote { action } => {
            remote::remote_cmd(&workspace::find(cli)?.repo_dir, action, cli.quiet)
        }
        Command::Push(args) => remote::push_cmd(cli, &workspace::find(cli)?, args),
        Command::Pull(args) => remote::pull_cmd(cli, &workspace::find(cli)?, args),
        Command::Fetch(args) => remote::fetch_cmd(cli, &workspace::find(cli)?, args),
        Command::Clone(args) => remote::clone_cmd(cli, args),
        Command::Ls { spec } => history::ls(cli, spec),
        Command::Cat { spec } => history::cat(cli, spec),
        Command::Show { rev } => history::show(cli, rev.as_deref()),
        Command::Diff { revs, stat, name_status } => history::diff(cli, revs, *stat, *name_status),
        Command::Switch { name, force } => worktree::switch(cli, name, *force),
        Command::Branch { name, rev, delete, remotes } => {
            refs::branch(cli, name.as_deref(), rev.as_deref(), *delete, *remotes)
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
