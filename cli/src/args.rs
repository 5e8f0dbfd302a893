//! The command line: global options and subcommands (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Content-addressed snapshots of a file tree.
#[derive(Parser)]
#[command(name = "vst", version, about)]
pub struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print nothing but errors (and what a command is asked to output).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Machine-readable output (commit, status, log, ls, show).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Create a repository (DIR/.vst) in DIR, or in the current directory.
    Init {
        /// Where to create it (default: the current directory, or -C's).
        // Not named `dir`: clap would merge it with the global -C.
        #[arg(value_name = "DIR")]
        path: Option<PathBuf>,
        /// Keep the objects in an object store (s3://BUCKET/PREFIX; the
        /// endpoint and credentials come from the AWS_* environment), with
        /// a bounded cache in .vst/cache; refs stay in .vst.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// The local cache's limit with --store, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = crate::workspace::CACHE_MIB_DEFAULT, requires = "store")]
        cache_mib: u64,
    },
    /// Snapshot the working directory and make it the current branch's head.
    Commit {
        /// Why.
        #[arg(short, long)]
        message: String,
        /// Commit even if nothing changed.
        #[arg(long)]
        allow_empty: bool,
        /// Who (default: $VST_AUTHOR, else $USER).
        #[arg(long)]
        author: Option<String>,
        /// Look only at these paths (files or directories, with what is
        /// below them): changes elsewhere are not seen and stay
        /// uncommitted. A build tool that knows what it wrote passes it.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Scan the whole tree, even with `vst watch` running.
        #[arg(long)]
        scan: bool,
        /// Take new files larger than snapshot.max-new-file-size (100 MiB
        /// unless configured) too; without it they are left out and
        /// listed.
        #[arg(long)]
        allow_large: bool,
    },
    /// What changed in the working directory since HEAD.
    Status {
        /// Look only at these paths (files or directories).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Scan the whole tree, even with `vst watch` running.
        #[arg(long)]
        scan: bool,
        /// Only the changes, a line each (`M path`): no header, nothing
        /// when clean.
        #[arg(short = 's', long)]
        short: bool,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell); e.g. `vst completions bash > /etc/bash_completion.d/vst`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff); e.g. `vst man | man -l -`.
    Man,
    /// Settings: user.name and user.email (who commits are by), in the
    /// repository or, with --global, for the user.
    Config(crate::config::ConfigArgs),
    /// Watch the work tree (inotify) in a daemon that holds the index, so
    /// that `status`, `diff` and `commit` look only at what changed.
    Watch(crate::watch::WatchArgs),
    /// Commits from REV (default HEAD) back along first parents.
    Log {
        /// Where to start (default HEAD); a path here, when no revision
        /// has that name, means `-- PATH`.
        rev: Option<String>,
        /// At most N commits.
        #[arg(short = 'n')]
        max: Option<usize>,
        /// One line per commit: its short id and the first line of its
        /// message.
        #[arg(long)]
        oneline: bool,
        /// Only the commits that changed these paths.
        #[arg(last = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// List a directory of a commit: REV or REV:PATH.
    Ls { spec: std::ffi::OsString },
    /// Print a file of a commit: REV:PATH.
    Cat { spec: std::ffi::OsString },
    /// A commit's metadata and what it changed; with REV:PATH, a file's
    /// content (or a directory's listing) in that commit.
    Show { spec: Option<std::ffi::OsString> },
    /// Bring PATHs back to what a commit (default HEAD) has there, losing
    /// their local changes; the branch does not move.
    Restore {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The commit to take them from.
        #[arg(long, short, default_value = "HEAD")]
        source: String,
    },
    /// Move the current branch (or a detached HEAD) to REV; the files stay
    /// and their differences show as local changes, or with --hard become
    /// REV's.
    Reset {
        rev: String,
        /// Make the files REV's too, losing local changes to tracked files.
        #[arg(long)]
        hard: bool,
    },
    /// Differences: the working directory against HEAD, against REV, or
    /// between two revisions.
    Diff {
        /// Zero, one or two revisions.
        #[arg(num_args = 0..=2)]
        revs: Vec<String>,
        /// A line per file with the count of changed lines.
        #[arg(long)]
        stat: bool,
        /// A line per file with its status letter.
        #[arg(long)]
        name_status: bool,
        /// Exit status 1 when anything differs, 0 when nothing does.
        #[arg(long)]
        exit_code: bool,
        /// Scan the whole tree, even with `vst watch` running.
        #[arg(long)]
        scan: bool,
        /// Only these paths (files, or directories with what they hold).
        #[arg(last = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Merge REV into the current branch: a fast-forward, a merge commit,
    /// or conflicts left marked in the work tree for `vst commit`.
    Merge {
        /// What to merge (a branch, a commit).
        #[arg(required_unless_present = "abort")]
        rev: Option<String>,
        /// Give up the merge in progress: the work tree back at HEAD.
        #[arg(long, conflicts_with = "rev")]
        abort: bool,
    },
    /// Check out branch NAME in place and make it the current branch.
    Switch {
        name: String,
        /// Overwrite uncommitted changes.
        #[arg(long)]
        force: bool,
    },
    /// List branches; create NAME at REV (default HEAD); delete with -d.
    Branch {
        name: Option<String>,
        rev: Option<String>,
        /// Delete the branch (only if HEAD holds all of it).
        #[arg(short = 'd', long)]
        delete: bool,
        /// Delete the branch even if HEAD does not hold all of it.
        #[arg(short = 'D', conflicts_with = "delete")]
        force_delete: bool,
        /// List the remote-tracking refs (REMOTE/BRANCH) instead.
        #[arg(short = 'r', long, conflicts_with_all = ["name", "rev", "delete", "force_delete"])]
        remotes: bool,
    },
    /// List tags; tag REV (default HEAD) as NAME; delete with -d.
    Tag {
        name: Option<String>,
        rev: Option<String>,
        /// Delete the tag.
        #[arg(short = 'd', long, conflicts_with_all = ["rev", "force"])]
        delete: bool,
        /// Move the tag if it exists.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Check out REV in place (only what differs), or into a new directory.
    Checkout {
        rev: String,
        /// Materialize REV into DIR (new or empty) instead.
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        /// Overwrite uncommitted changes.
        #[arg(long)]
        force: bool,
    },
    /// Check the repository: everything reachable, its structure and ids.
    Fsck {
        /// Also read and rehash every byte.
        #[arg(long)]
        read_data: bool,
    },
    /// Remove what no branch or recent reflog entry reaches.
    Gc {
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Keep what reflog entries younger than this many hours reach.
        #[arg(long, default_value_t = 24 * 14)]
        grace_hours: u64,
        /// Collect remote NAME instead: delete its packs that no branch
        /// needs and that are older than --grace.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["dry_run", "grace_hours"])]
        remote: Option<String>,
        /// With --remote: never delete a pack younger than this (30s, 15m,
        /// 1h, 2d; default 1h).
        #[arg(long, value_name = "DURATION", requires = "remote")]
        grace: Option<String>,
    },
    /// Mount a commit (default HEAD), or every branch and commit, read-only.
    Mount(crate::mount::MountArgs),
    /// Unmount what `vst mount` mounted.
    Umount(crate::mount::UmountArgs),
    /// Manage remotes (object stores to push to and pull from).
    Remote {
        #[command(subcommand)]
        action: crate::remote::RemoteAction,
    },
    /// Send a branch to a remote (fast-forward only).
    Push(crate::remote::PushArgs),
    /// Fetch a branch from a remote and fast-forward to it.
    Pull(crate::remote::PullArgs),
    /// Fetch every branch of a remote into REMOTE/BRANCH tracking refs.
    Fetch(crate::remote::FetchArgs),
    /// Copy a remote into a new repository in DIR and check out HEAD.
    Clone(crate::remote::CloneArgs),
}
