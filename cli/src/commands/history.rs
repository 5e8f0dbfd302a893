//! Reading history: `log`, `ls`, `cat`, `show`, `diff`.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use vst::worktree::{Found, ScanOptions};
use vst::{CommitId, EntryKind, Repo, RepoPath, read};
use vst_cas::Access;

use crate::args::Cli;
use crate::output::{commit_json, letter, out, status_letter, status_word, utc};
use crate::rev;
use crate::workspace::{find, open, open_worktree, save_index};

/// A commit as `log` and `show` print it: id, a merge's parents, author,
/// date, and the message indented.
fn write_header(out: &mut impl Write, id: CommitId, c: &vst::Commit) -> std::io::Result<()> {
    writeln!(out, "commit {id}")?;
    if c.parents.len() > 1 {
        let parents: Vec<String> =
            c.parents.iter().map(|p| format!("{:.12}", p.to_string())).collect();
        writeln!(out, "merge  {}", parents.join(" "))?;
    }
    writeln!(
        out,
        "author {}\ndate   {}\n\n    {}\n",
        c.author,
        utc(c.time.unix_us),
        c.message.trim_end().replace('\n', "\n    ")
    )
}

/// `vst log [REV] [-- PATH...]`: first parents back from REV; with paths,
/// only the commits that changed one of them.
pub fn log(
    cli: &Cli,
    rev: Option<&str>,
    max: Option<usize>,
    oneline: bool,
    paths: &[std::path::PathBuf],
) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    // `vst log PATH`: a path where no revision has that name.
    let (rev, paths) = match rev {
        Some(r)
            if paths.is_empty()
                && rev::resolve(&repo, r).is_err()
                && crate::workspace::start_dir(cli)?.join(r).symlink_metadata().is_ok() =>
        {
            (None, vec![std::path::PathBuf::from(r)])
        }
        _ => (rev, paths.to_vec()),
    };
    let paths = crate::workspace::repo_paths(cli, &ws.root, &paths)?;
    let store = repo.store();
    let mut next = Some(rev::resolve(&repo, rev.unwrap_or("HEAD"))?);
    let mut out = out();
    let mut shown = 0;
    let mut list = Vec::new();
    while let Some(id) = next {
        if max.is_some_and(|m| shown >= m) {
            break;
        }
        let c = read::read_commit(store.as_ref(), id)?;
        next = c.parents.first().copied();
        if !paths.is_empty() {
            let parent_tree = match next {
                Some(p) => Some(read::read_commit(store.as_ref(), p)?.tree),
                None => None,
            };
            let at = |tree: Option<vst::TreeId>, path: &RepoPath| -> Result<Option<EntryKind>> {
                match tree {
                    Some(t) => Ok(read::lookup(store.as_ref(), t, path)?),
                    None => Ok(None),
                }
            };
            let mut changed = false;
            for path in &paths {
                if at(Some(c.tree), path)? != at(parent_tree, path)? {
                    changed = true;
                    break;
                }
            }
            if !changed {
                continue;
            }
        }
        if cli.json {
            list.push(commit_json(id, &c));
        } else if oneline {
            let first = c.message.lines().next().unwrap_or("");
            writeln!(out, "{:.12} {first}", id.to_string())?;
        } else {
            write_header(&mut out, id, &c)?;
        }
        shown += 1;
    }
    if cli.json {
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Splits REV[:PATH]; PATH is bytes (file names need not be UTF-8).
fn split_spec(spec: &std::ffi::OsStr) -> Result<(&str, RepoPath)> {
    let bytes = spec.as_bytes();
    let (rev, path) = match bytes.iter().position(|&b| b == b':') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b""[..]),
    };
    let rev = std::str::from_utf8(rev)
        .map_err(|_| anyhow!("bad revision in {spec:?}: revisions are ASCII"))?;
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    let end = path.iter().rposition(|&b| b != b'/').map_or(start, |i| i + 1);
    let path = RepoPath::try_from(&path[start..end.max(start)])
        .with_context(|| format!("bad path in {spec:?}"))?;
    Ok((rev, path))
}

/// `vst ls`.
pub fn ls(cli: &Cli, spec: &std::ffi::OsStr) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let (rev, path) = split_spec(spec)?;
    let tree = read::read_commit(repo.store().as_ref(), rev::resolve(&repo, rev)?)?.tree;
    let listing = read::list_dir(repo.store().as_ref(), tree, &path)?;
    let mut out = out();
    let mut list = Vec::new();
    for entry in listing.entries() {
        let name = entry.name.to_string();
        let (kind, id, size, executable, target) = match &entry.kind {
            EntryKind::File(f) => ("file", f.id.to_string(), Some(f.size), f.executable, None),
            EntryKind::Dir(t) => ("dir", t.to_string(), None, false, None),
            EntryKind::Symlink(t) => (
                "symlink",
                String::new(),
                None,
                false,
                Some(String::from_utf8_lossy(t.as_bytes()).into_owned()),
            ),
        };
        if cli.json {
            list.push(json!({ "name": name, "type": kind, "id": id, "size": size, "executable": executable, "target": target }));
        } else {
            let mode = match (kind, executable) {
                ("dir", _) => "d",
                ("symlink", _) => "l",
                (_, true) => "x",
                _ => "-",
            };
            let shown = match &target {
                Some(t) => format!("{name} -> {t}"),
                None => name,
            };
            writeln!(
                out,
                "{mode} {:>10} {:.12} {shown}",
                size.map_or(String::new(), |s| s.to_string()),
                id
            )?;
        }
    }
    if cli.json {
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `vst cat`.
pub fn cat(cli: &Cli, spec: &std::ffi::OsStr) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let (rev, path) = split_spec(spec)?;
    if path.is_root() {
        bail!("`vst cat` needs REV:PATH, the path of a file");
    }
    let tree = read::read_commit(repo.store().as_ref(), rev::resolve(&repo, rev)?)?.tree;
    if cli.json {
        let Some(EntryKind::File(f)) = read::lookup(repo.store().as_ref(), tree, &path)? else {
            bail!("{rev} has no file at {path}");
        };
        let bytes = read::read_blob(repo.store().as_ref(), &f)?;
        let value = json!({
            "path": path.to_string(),
            "id": f.id.to_string(),
            "size": f.size,
            "executable": f.executable,
            "text": std::str::from_utf8(&bytes).ok(),
        });
        writeln!(out(), "{value}")?;
        return Ok(ExitCode::SUCCESS);
    }
    read::copy_file(repo.store().as_ref(), tree, &path, &mut out())?;
    Ok(ExitCode::SUCCESS)
}

/// `vst show [REV]`, or `vst show REV:PATH` (a file's content, a
/// directory's listing, a symlink's target).
pub fn show(cli: &Cli, spec: Option<&std::ffi::OsStr>) -> Result<ExitCode> {
    if let Some(spec) = spec.filter(|s| s.as_bytes().contains(&b':')) {
        let ws = find(cli)?;
        let repo = open(&ws, Access::ReadOnly)?;
        let (rev, path) = split_spec(spec)?;
        let tree = read::read_commit(repo.store().as_ref(), rev::resolve(&repo, rev)?)?.tree;
        let entry = if path.is_root() {
            Some(EntryKind::Dir(tree))
        } else {
            read::lookup(repo.store().as_ref(), tree, &path)?
        };
        return match entry {
            None => bail!("{rev} has nothing at {path}"),
            Some(EntryKind::Dir(_)) => ls(cli, spec),
            Some(EntryKind::Symlink(t)) if !cli.json => {
                out().write_all(t.as_bytes())?;
                writeln!(out())?;
                Ok(ExitCode::SUCCESS)
            }
            Some(EntryKind::Symlink(t)) => {
                let target = String::from_utf8_lossy(t.as_bytes());
                writeln!(out(), "{}", json!({ "path": path.to_string(), "symlink": target }))?;
                Ok(ExitCode::SUCCESS)
            }
            Some(EntryKind::File(_)) => cat(cli, spec),
        };
    }
    let rev = spec.map(|s| s.to_str().ok_or_else(|| anyhow!("bad revision {s:?}"))).transpose()?;
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let id = rev::resolve(&repo, rev.unwrap_or("HEAD"))?;
    let c = read::read_commit(repo.store().as_ref(), id)?;
    let parent_tree = match c.parents.first() {
        Some(p) => Some(read::read_commit(repo.store().as_ref(), *p)?.tree),
        None => None,
    };
    let changes = vst::diff_trees(repo.store().as_ref(), parent_tree, Some(c.tree))?;
    let mut out = out();
    if cli.json {
        let mut value = commit_json(id, &c);
        value["changes"] = changes
            .iter()
            .map(|ch| json!({ "path": ch.path.to_string(), "status": status_word(letter(ch.kind())) }))
            .collect();
        writeln!(out, "{value}")?;
    } else {
        write_header(&mut out, id, &c)?;
        // As `status` lists them: a directory shows through what it holds
        // (an empty one still shows).
        let paths: Vec<String> = changes.iter().map(|ch| ch.path.to_string()).collect();
        let above: std::collections::HashSet<&str> =
            paths.iter().flat_map(|p| p.match_indices('/').map(move |(i, _)| &p[..i])).collect();
        let dir_only = |ch: &vst::Change| {
            matches!(
                (&ch.old, &ch.new),
                (Some(EntryKind::Dir(_)) | None, Some(EntryKind::Dir(_)) | None)
            )
        };
        for (ch, path) in changes.iter().zip(&paths) {
            if dir_only(ch) && above.contains(path.as_str()) {
                continue;
            }
            writeln!(out, "{} {}", letter(ch.kind()), ch.path)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One changed path and its two sides' bytes (a symlink's target stands
/// for its content; a directory has none).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct FileDiff {
    path: String,
    status: char,
    /// Git's mode of each side (100644, 100755, 120000), if present.
    old_mode: Option<u32>,
    new_mode: Option<u32>,
    old: Option<Vec<u8>>,
    new: Option<Vec<u8>>,
}

/// Git's mode of a tree entry (a directory has none here).
fn mode_of(kind: Option<&EntryKind>) -> Option<u32> {
    match kind? {
        EntryKind::File(f) => Some(if f.executable { 0o100755 } else { 0o100644 }),
        EntryKind::Symlink(_) => Some(0o120000),
        EntryKind::Dir(_) => None,
    }
}

fn stored_bytes(repo: &Repo, kind: Option<&EntryKind>) -> Result<Option<Vec<u8>>> {
    Ok(match kind {
        Some(EntryKind::File(f)) => Some(repo.store().get(&f.id.object_id())?.to_vec()),
        Some(EntryKind::Symlink(t)) => Some(t.as_bytes().to_vec()),
        _ => None,
    })
}

/// `vst diff`: against the working directory through the watch daemon if
/// one runs (and not `--scan`), else by scanning here.
pub fn diff(
    cli: &Cli,
    revs: &[String],
    style: DiffStyle,
    scan: bool,
    paths: &[std::path::PathBuf],
) -> Result<ExitCode> {
    let ws = find(cli)?;
    let only = crate::workspace::repo_paths(cli, &ws.root, paths)?;
    // With paths, only what is at or below them.
    let print_diff = |cli: &Cli, mut files: Vec<FileDiff>, style: DiffStyle| {
        files.retain(|f| {
            only.is_empty()
                || only.iter().any(|p| {
                    let p = p.to_string();
                    p.is_empty() || f.path == p || f.path.starts_with(&format!("{p}/"))
                })
        });
        print_diff(cli, &files, style)
    };
    // What a commit would take: new files above the size limit are left
    // out (status lists them).
    let new_file_len_max = crate::config::new_file_len_max(&ws.repo_dir)?;
    if revs.len() < 2 && !scan {
        let request = crate::watch::Request::Diff { rev: revs.first().cloned(), new_file_len_max };
        if let Some(answer) = crate::watch::ask(&ws.repo_dir, &request) {
            let crate::watch::Response::Diff(files) = answer? else {
                bail!("the watch daemon answered a diff with something else");
            };
            return print_diff(cli, files, style);
        }
    }
    let mut worktree = open_worktree(&ws, Access::ReadOnly)?;
    let files = match revs {
        [a, b] => {
            let repo = worktree.repo().clone();
            let tree_of = |rev: &str| -> Result<vst::TreeId> {
                Ok(read::read_commit(repo.store().as_ref(), rev::resolve(&repo, rev)?)?.tree)
            };
            tree_diff(&repo, Some(tree_of(a)?), Some(tree_of(b)?))?
        }
        _ => {
            let files = worktree_diff(
                &mut worktree,
                revs.first().map(String::as_str),
                &ScanOptions { new_file_len_max, ..Default::default() },
            )?;
            save_index(&mut worktree);
            files
        }
    };
    print_diff(cli, files, style)
}

/// The files that differ between `rev` (default: the commit the files are
/// at, as for `status`: HEAD's unless a writable mount moved the branch)
/// and the working directory, with both sides' bytes.
pub fn worktree_diff(
    worktree: &mut vst::worktree::WorkTree,
    rev: Option<&str>,
    scan: &ScanOptions<'_>,
) -> Result<Vec<FileDiff>> {
    let repo = worktree.repo().clone();
    let base = match rev {
        Some(rev) => {
            Some(read::read_commit(repo.store().as_ref(), rev::resolve(&repo, rev)?)?.tree)
        }
        None => match worktree.at() {
            Some(at) => Some(read::read_commit(repo.store().as_ref(), at)?.tree),
            None => None,
        },
    };
    let changes = worktree.diff_from(base, scan)?;
    let mut files = Vec::new();
    for d in changes {
        // A directory shows through its contents.
        let dir_or_absent_before = matches!(d.old, None | Some(EntryKind::Dir(_)));
        if dir_or_absent_before && matches!(d.new, None | Some(Found::Dir)) {
            continue;
        }
        let new = match &d.new {
            Some(Found::File(_)) => {
                let full = worktree.root().join(std::ffi::OsStr::from_bytes(d.path.as_bytes()));
                Some(std::fs::read(&full).with_context(|| format!("reading {}", full.display()))?)
            }
            Some(Found::Symlink(t)) => Some(t.clone()),
            Some(Found::Dir) | None => None,
        };
        let status = status_letter(d.status());
        let new_mode = match &d.new {
            Some(Found::File(f)) => Some(if f.executable { 0o100755 } else { 0o100644 }),
            Some(Found::Symlink(_)) => Some(0o120000),
            Some(Found::Dir) | None => None,
        };
        files.push(FileDiff {
            path: d.path.to_string(),
            status,
            old_mode: mode_of(d.old.as_ref()),
            new_mode,
            old: stored_bytes(&repo, d.old.as_ref())?,
            new,
        });
    }
    Ok(files)
}

/// The files (and symlinks) that differ between trees `a` and `b` of the
/// store, with both sides' bytes; a directory shows through its contents.
pub fn tree_diff(
    repo: &Repo,
    a: Option<vst::TreeId>,
    b: Option<vst::TreeId>,
) -> Result<Vec<FileDiff>> {
    let mut files = Vec::new();
    for change in vst::diff_trees(repo.store().as_ref(), a, b)? {
        if matches!(
            (&change.old, &change.new),
            (Some(EntryKind::Dir(_)) | None, Some(EntryKind::Dir(_)) | None)
        ) {
            continue;
        }
        files.push(FileDiff {
            path: change.path.to_string(),
            status: letter(change.kind()),
            old_mode: mode_of(change.old.as_ref()),
            new_mode: mode_of(change.new.as_ref()),
            old: stored_bytes(repo, change.old.as_ref())?,
            new: stored_bytes(repo, change.new.as_ref())?,
        });
    }
    Ok(files)
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes.iter().take(8000).any(|&b| b == 0) || std::str::from_utf8(bytes).is_err()
}

/// How `vst diff` prints.
#[derive(Clone, Copy, Default)]
pub struct DiffStyle {
    /// A line per file with its count of changed lines (`--stat`).
    pub stat: bool,
    /// A line per file with its status letter (`--name-status`).
    pub name_status: bool,
    /// Exit status 1 when anything differs (`--exit-code`).
    pub exit_code: bool,
}

/// Counts of inserted and deleted lines of a text file's change.
fn line_counts(old: &str, new: &str) -> (usize, usize) {
    let d = similar::TextDiff::from_lines(old, new);
    let (mut ins, mut del) = (0, 0);
    for change in d.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => ins += 1,
            similar::ChangeTag::Delete => del += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    (ins, del)
}

/// `files` in git's patch format: `diff --git` headers, file modes,
/// `Binary files ... differ`, unified hunks with three lines of context.
fn patch(files: &[FileDiff]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for f in files {
        let (old, new) = (f.old.as_deref().unwrap_or(b""), f.new.as_deref().unwrap_or(b""));
        let _ = writeln!(out, "diff --git a/{} b/{}", f.path, f.path);
        match (f.old_mode, f.new_mode) {
            (None, Some(m)) => {
                let _ = writeln!(out, "new file mode {m:o}");
            }
            (Some(m), None) => {
                let _ = writeln!(out, "deleted file mode {m:o}");
            }
            (Some(a), Some(b)) if a != b => {
                let _ = writeln!(out, "old mode {a:o}\nnew mode {b:o}");
            }
            _ => {}
        }
        if old == new && f.old.is_some() && f.new.is_some() {
            continue;
        }
        let a = if f.old.is_some() { format!("a/{}", f.path) } else { "/dev/null".to_owned() };
        let b = if f.new.is_some() { format!("b/{}", f.path) } else { "/dev/null".to_owned() };
        if is_binary(old) || is_binary(new) {
            let _ = writeln!(out, "Binary files {a} and {b} differ");
            continue;
        }
        let _ = writeln!(out, "--- {a}\n+++ {b}");
        let d = similar::TextDiff::from_lines(
            std::str::from_utf8(old).expect("checked"),
            std::str::from_utf8(new).expect("checked"),
        );
        for hunk in d.unified_diff().context_radius(3).iter_hunks() {
            let _ = write!(out, "{hunk}");
        }
    }
    out
}

/// `text` with git's colours: headers bold, hunk heads cyan, additions
/// green, removals red.
fn colour(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.split_inclusive('\n') {
        let code = if line.starts_with("diff --git ")
            || line.starts_with("--- ")
            || line.starts_with("+++ ")
            || line.starts_with("new file mode")
            || line.starts_with("deleted file mode")
            || line.starts_with("old mode")
            || line.starts_with("new mode")
        {
            "1"
        } else if line.starts_with("@@") {
            "36"
        } else if line.starts_with('+') {
            "32"
        } else if line.starts_with('-') {
            "31"
        } else {
            ""
        };
        let body = line.strip_suffix('\n').unwrap_or(line);
        if code.is_empty() {
            out.push_str(line);
        } else {
            out.push_str(&format!("\x1b[{code}m{body}\x1b[m"));
            if line.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// Writes `text` to standard output; on a terminal through a pager
/// (`$VST_PAGER`, `$PAGER`, else `less`, which quits at once when it
/// fits on a screen).
fn page(text: &str) -> Result<()> {
    use std::io::IsTerminal;
    if text.is_empty() || !std::io::stdout().is_terminal() {
        return Ok(out().write_all(text.as_bytes())?);
    }
    let pager = std::env::var("VST_PAGER")
        .or_else(|_| std::env::var("PAGER"))
        .unwrap_or_else(|_| "less".to_owned());
    if pager.is_empty() || pager == "cat" {
        return Ok(out().write_all(text.as_bytes())?);
    }
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&pager)
        .env("LESS", std::env::var("LESS").unwrap_or_else(|_| "FRX".to_owned()))
        .stdin(std::process::Stdio::piped())
        .spawn();
    match child {
        Ok(mut child) => {
            if let Some(mut stdin) = child.stdin.take() {
                // A pager quit early (q) is not an error.
                let _ = stdin.write_all(text.as_bytes());
            }
            child.wait()?;
            Ok(())
        }
        Err(_) => Ok(out().write_all(text.as_bytes())?),
    }
}

/// Prints `files` as `diff` does.
pub fn print_diff(cli: &Cli, files: &[FileDiff], style: DiffStyle) -> Result<ExitCode> {
    let code =
        if style.exit_code && !files.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    let mut out = out();
    if cli.json {
        let list: Vec<_> = files
            .iter()
            .map(|f| json!({ "path": f.path, "status": status_word(f.status) }))
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
        return Ok(code);
    }
    if style.name_status {
        for f in files {
            writeln!(out, "{}\t{}", f.status, f.path)?;
        }
        return Ok(code);
    }
    if style.stat {
        // As git: names padded to the longest, counts right-aligned, a bar
        // of at most 40 signs.
        let rows: Vec<(&str, Option<(usize, usize)>)> = files
            .iter()
            .map(|f| {
                let (old, new) = (f.old.as_deref().unwrap_or(b""), f.new.as_deref().unwrap_or(b""));
                let counts = (!is_binary(old) && !is_binary(new)).then(|| {
                    line_counts(
                        std::str::from_utf8(old).expect("checked"),
                        std::str::from_utf8(new).expect("checked"),
                    )
                });
                (f.path.as_str(), counts)
            })
            .collect();
        let width = rows.iter().map(|(p, _)| p.chars().count()).max().unwrap_or(0);
        let most = rows.iter().filter_map(|(_, c)| c.map(|(i, d)| i + d)).max().unwrap_or(0);
        let digits = most.to_string().len().max(3);
        let (mut total_ins, mut total_del) = (0usize, 0usize);
        for (path, counts) in &rows {
            match counts {
                None => writeln!(out, " {path:<width$} | {:>digits$}", "Bin")?,
                Some((ins, del)) => {
                    total_ins += ins;
                    total_del += del;
                    let scale = |n: usize| if most > 40 { (n * 40).div_ceil(most) } else { n };
                    writeln!(
                        out,
                        " {path:<width$} | {:>digits$} {}{}",
                        ins + del,
                        "+".repeat(scale(*ins)),
                        "-".repeat(scale(*del))
                    )?;
                }
            }
        }
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        writeln!(
            out,
            " {}, {}, {}",
            plural(files.len(), "file changed", "files changed"),
            plural(total_ins, "insertion(+)", "insertions(+)"),
            plural(total_del, "deletion(-)", "deletions(-)")
        )?;
        return Ok(code);
    }
    drop(out);
    let text = patch(files);
    use std::io::IsTerminal;
    let coloured = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    page(&if coloured { colour(&text) } else { text })?;
    Ok(code)
}
