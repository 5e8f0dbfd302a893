//! `vst merge REV` (and `--abort`), the merge `pull` makes when branches
//! diverged, and the merge state (`.vst/merge`) that `status` shows and
//! `commit` finishes.
//!
//! The library merges trees (`vst::merge`); here text files in conflict
//! get a line merge with git's conflict markers, and the work tree is
//! updated through the one update rule (`WorkTree::check_out`), touching
//! only what differs.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use vst::merge::{Conflict, ConflictKind, merge_base, merge_trees};
use vst::worktree::{CheckoutOptions, ScanOptions, WorkTree};
use vst::{CommitId, CommitOptions, EntryKind, RepoPath, WorkingSet, read};
use vst_cas::{Access, Head};

use crate::args::Cli;
use crate::output::out;
use crate::rev;
use crate::workspace::{find, open_worktree, save_index};

/// The merge state, in the repository directory, while a merge with
/// conflicts waits for its commit.
pub const MERGE_STATE: &str = "merge";

/// What a merge in progress is: what it merges, and what is left to do.
#[derive(Debug, Clone)]
pub struct MergeState {
    /// The commit being merged in (the merge commit's second parent).
    pub theirs: CommitId,
    /// How the user named it.
    pub spec: String,
    /// The commit of what merged (ours at each conflict), which the work
    /// tree was brought to: `--abort` goes back from it.
    pub merged: CommitId,
    /// The paths in conflict.
    pub conflicts: Vec<RepoPath>,
    /// Files written beside a conflict with their side (`PATH~theirs`).
    pub side_files: Vec<RepoPath>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

impl MergeState {
    /// The merge in progress in `repo_dir`, if there is one.
    pub fn read(repo_dir: &Path) -> Result<Option<Self>> {
        let path = repo_dir.join(MERGE_STATE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let damaged = || anyhow!("{} is damaged; `vst merge --abort` clears it", path.display());
        let mut lines = text.lines();
        if lines.next() != Some("vst-merge 1") {
            return Err(damaged());
        }
        let none = CommitId::new(vst_cas::ObjectId::from_bytes([0; 32]));
        let mut state = MergeState {
            theirs: none,
            spec: String::new(),
            merged: none,
            conflicts: Vec::new(),
            side_files: Vec::new(),
        };
        let path_of = |s: &str| unhex(s).and_then(|b| RepoPath::try_from(&b[..]).ok());
        for line in lines {
            match line.split_once(' ') {
                Some(("theirs", id)) => state.theirs = id.parse().map_err(|_| damaged())?,
                Some(("spec", spec)) => state.spec = spec.to_owned(),
                Some(("merged", id)) => state.merged = id.parse().map_err(|_| damaged())?,
                Some(("conflict", p)) => state.conflicts.push(path_of(p).ok_or_else(damaged)?),
                Some(("side", p)) => state.side_files.push(path_of(p).ok_or_else(damaged)?),
                _ => return Err(damaged()),
            }
        }
        Ok(Some(state))
    }

    fn write(&self, repo_dir: &Path) -> Result<()> {
        let mut text = format!(
            "vst-merge 1\ntheirs {}\nspec {}\nmerged {}\n",
            self.theirs, self.spec, self.merged
        );
        for p in &self.conflicts {
            text.push_str(&format!("conflict {}\n", hex(p.as_bytes())));
        }
        for p in &self.side_files {
            text.push_str(&format!("side {}\n", hex(p.as_bytes())));
        }
        let path = repo_dir.join(MERGE_STATE);
        let tmp = repo_dir.join(format!("{MERGE_STATE}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("writing {}", path.display()))
    }

    /// Ends the merge in progress (committed or aborted).
    pub fn remove(repo_dir: &Path) -> Result<()> {
        let path = repo_dir.join(MERGE_STATE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Refuses to commit while a conflict is visibly unresolved: conflict
    /// markers in a file, or a side file still there.
    pub fn check_resolved(&self, root: &Path) -> Result<()> {
        let full = |p: &RepoPath| root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
        for p in &self.side_files {
            if full(p).symlink_metadata().is_ok() {
                bail!(
                    "{p} is still there: it holds their side of a conflict, written for you to resolve it; remove it, then commit"
                );
            }
        }
        for p in &self.conflicts {
            let Ok(bytes) = std::fs::read(full(p)) else { continue };
            let marked = |m: &[u8]| bytes.split(|&b| b == b'\n').any(|l| l.starts_with(m));
            if marked(b"<<<<<<< ") && marked(b"=======") && marked(b">>>>>>> ") {
                bail!("{p} still has conflict markers: resolve them, then commit");
            }
        }
        Ok(())
    }
}

/// What a merge did.
pub enum Outcome {
    /// Nothing to merge: ours already holds theirs.
    UpToDate,
    /// Ours moved forward to theirs.
    FastForward(CommitId),
    /// A merge commit, and the work tree is at it.
    Merged(CommitId),
    /// Conflicts: the work tree holds what merged, with the conflicts
    /// marked, and waits for a commit.
    Conflicts(Vec<Conflict>, Vec<RepoPath>),
}

/// `vst merge REV` / `vst merge --abort`.
pub fn merge_cmd(cli: &Cli, spec: Option<&str>, abort: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
    let mut worktree = open_worktree(&ws, Access::ReadWrite)?;
    if abort {
        return abort_merge(cli, &mut worktree);
    }
    let spec = spec.ok_or_else(|| anyhow!("name what to merge: `vst merge REV`"))?;
    let repo = worktree.repo().clone();
    let theirs = rev::resolve(&repo, spec)?;
    let outcome = merge_into(cli, &mut worktree, theirs, spec)?;
    report(cli, spec, &outcome)
}

/// Prints what a merge did; exit status 1 with conflicts.
pub fn report(cli: &Cli, spec: &str, outcome: &Outcome) -> Result<ExitCode> {
    let mut out = out();
    let (status, commit) = match outcome {
        Outcome::UpToDate => ("up to date", None),
        Outcome::FastForward(c) => ("fast-forward", Some(*c)),
        Outcome::Merged(c) => ("merged", Some(*c)),
        Outcome::Conflicts(..) => ("conflicts", None),
    };
    if cli.json {
        let mut value = json!({ "status": status, "commit": commit.map(|c| c.to_string()) });
        if let Outcome::Conflicts(conflicts, side) = outcome {
            value["conflicts"] = conflicts
                .iter()
                .map(|c| json!({ "path": c.path.to_string(), "kind": kind_word(c.kind()) }))
                .collect();
            value["side_files"] = side.iter().map(|p| json!(p.to_string())).collect();
        }
        writeln!(out, "{value}")?;
    } else {
        match outcome {
            _ if cli.quiet => {}
            Outcome::UpToDate => writeln!(out, "already up to date with {spec}")?,
            Outcome::FastForward(c) => writeln!(out, "fast-forward to {spec} ({c:.12})")?,
            Outcome::Merged(c) => writeln!(out, "merged {spec}: {c}")?,
            Outcome::Conflicts(conflicts, side) => {
                for c in conflicts {
                    writeln!(out, "C {} ({})", c.path, kind_word(c.kind()))?;
                }
                for p in side {
                    writeln!(out, "  their side of a conflict written to {p}")?;
                }
                writeln!(
                    out,
                    "merging {spec}: {} conflicts; resolve them and `vst commit`, or `vst merge --abort`",
                    conflicts.len()
                )?;
            }
        }
    }
    Ok(if matches!(outcome, Outcome::Conflicts(..)) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The one word for a conflict's kind (`--json` and listings).
pub fn kind_word(kind: ConflictKind) -> &'static str {
    match kind {
        ConflictKind::BothModified => "both modified",
        ConflictKind::BothAdded => "both added",
        ConflictKind::ModifiedDeleted => "modified and deleted",
        ConflictKind::FileDirectory => "file and directory",
    }
}

/// Merges `theirs` into the work tree's `HEAD`: a fast-forward when one
/// contains the other, else a merge commit (two parents) when everything
/// merges, else the work tree left with the conflicts marked and the
/// merge state written.
pub fn merge_into(
    cli: &Cli,
    worktree: &mut WorkTree,
    theirs: CommitId,
    spec: &str,
) -> Result<Outcome> {
    let repo = worktree.repo().clone();
    let repo_dir = repo.dir().to_owned();
    if MergeState::read(&repo_dir)?.is_some() {
        bail!("a merge is in progress: resolve it and `vst commit`, or `vst merge --abort`");
    }
    let Some(ours) = worktree.head() else {
        bail!("nothing to merge into: HEAD has no commit yet");
    };
    if worktree.at() != Some(ours) {
        bail!(
            "the work tree's files are not at HEAD (another process moved the branch); `vst checkout HEAD` first"
        );
    }
    let store = repo.store();
    let base = merge_base(store.as_ref(), ours, theirs)?;
    if base == Some(theirs) {
        return Ok(Outcome::UpToDate);
    }
    if base == Some(ours) {
        update_to(cli, worktree, Some(ours), theirs, spec, false)?;
        return Ok(Outcome::FastForward(theirs));
    }
    let tree_of =
        |c: CommitId| -> Result<vst::TreeId> { Ok(read::read_commit(store.as_ref(), c)?.tree) };
    let base_tree = base.map(tree_of).transpose()?;
    let merged = merge_trees(store.as_ref(), base_tree, tree_of(ours)?, tree_of(theirs)?)?;
    // Text files both sides changed merge line by line; what still
    // conflicts is marked.
    let mut ws = WorkingSet::from_tree(store.clone(), merged.tree)?;
    ws.set_head(Some(ours));
    let mut left = Vec::new();
    for conflict in merged.conflicts {
        match text_merge(store.as_ref(), &conflict, spec)? {
            Some((bytes, false, executable)) => {
                ws.write(&conflict.path, &bytes)?;
                ws.set_executable(&conflict.path, executable)?;
            }
            Some((bytes, true, _)) => left.push((conflict, Some(bytes))),
            None => left.push((conflict, None)),
        }
    }
    let options = CommitOptions {
        author: crate::config::author(None, &repo_dir),
        message: format!("merge {spec}"),
        merged: vec![theirs],
        ..Default::default()
    };
    let commit = vst::commit(&mut ws, &options)?;
    if left.is_empty() {
        update_to(cli, worktree, Some(ours), commit, spec, false)?;
        return Ok(Outcome::Merged(commit));
    }
    // Conflicts: the work tree must hold nothing of the user's that
    // `--abort` would lose.
    let local = worktree.status(&ScanOptions::default())?;
    if !local.changes.is_empty() {
        bail!(
            "merging {spec} gives {} conflicts, and the work tree has local changes: commit or discard them first, so that `vst merge --abort` can bring it back (nothing was changed)",
            left.len()
        );
    }
    // Where their side of each conflict goes, decided (and the state
    // written) before anything is touched: a merge that stops half-way
    // leaves a state that `--abort` can undo.
    let places: Vec<Option<RepoPath>> =
        left.iter().map(|(c, marked)| their_place(c, marked.is_some())).collect::<Result<_>>()?;
    let side_files: Vec<RepoPath> = left
        .iter()
        .zip(&places)
        .filter_map(|((c, _), place)| place.clone().filter(|p| *p != c.path))
        .collect();
    let state = MergeState {
        theirs,
        spec: spec.to_owned(),
        merged: commit,
        conflicts: left.iter().map(|(c, _)| c.path.clone()).collect(),
        side_files: side_files.clone(),
    };
    state.write(&repo_dir)?;
    // What merged goes into the work tree (ours at each conflict); the
    // index stays at ours, so all of it shows as local changes.
    if let Err(e) = worktree.check_out(commit, &CheckoutOptions::default()) {
        // Refused before writing (something in the way): no merge began.
        if matches!(e, vst::Error::Conflicts { .. }) {
            MergeState::remove(&repo_dir)?;
        }
        return Err(
            anyhow::Error::new(e).context(format!("updating the work tree to the merge of {spec}"))
        );
    }
    worktree.reset(Some(ours))?;
    let root = worktree.root().to_owned();
    for ((conflict, marked), place) in left.iter().zip(&places) {
        write_conflict(store.as_ref(), &root, conflict, marked.as_deref(), place.as_ref())?;
    }
    save_index(worktree);
    Ok(Outcome::Conflicts(left.into_iter().map(|(c, _)| c).collect(), side_files))
}

/// Where the work tree shows their side of a conflict: nowhere for marked
/// text or what they deleted; where it was when we deleted it; else beside
/// ours, as `PATH~theirs`.
fn their_place(conflict: &Conflict, marked: bool) -> Result<Option<RepoPath>> {
    if marked || conflict.theirs.is_none() {
        return Ok(None);
    }
    if conflict.ours.is_none() {
        return Ok(Some(conflict.path.clone()));
    }
    let (parent, name) = conflict.path.split_last().expect("a conflict is never the root");
    let mut side = name.to_vec();
    side.extend_from_slice(b"~theirs");
    let side = vst::Name::try_from(&side[..])
        .and_then(|n| parent.join(&n))
        .with_context(|| format!("naming the file beside {} for their side", conflict.path))?;
    Ok(Some(side))
}

/// Brings the work tree from `ours` to `target` (only what differs;
/// local changes elsewhere stay, or with `force` are lost), then moves
/// `HEAD`'s branch (or a detached `HEAD`) from `ours` to `target`.
pub fn update_to(
    cli: &Cli,
    worktree: &mut WorkTree,
    ours: Option<CommitId>,
    target: CommitId,
    spec: &str,
    force: bool,
) -> Result<()> {
    let repo = worktree.repo().clone();
    let head = repo.refs().head()?;
    let new_head = match &head {
        Head::Branch(_) => head.clone(),
        Head::Detached(_) => Head::Detached(target.object_id()),
    };
    crate::commands::worktree::check_out(cli, worktree, target, &new_head, force, spec)?;
    if let Head::Branch(branch) = &head {
        let message = format!("{}: {spec}", if force { "reset" } else { "merge" });
        repo.refs()
            .update(branch, ours.map(|c| c.object_id()), Some(target.object_id()), &message)
            .with_context(|| {
                format!(
                    "{branch} moved meanwhile; the files are at {target:.12}: `vst checkout HEAD` brings them back to the branch"
                )
            })?;
    }
    worktree.reset(Some(target))?;
    Ok(())
}

/// A line merge of a text file both sides changed: its bytes, whether
/// conflicts remain (marked), and the executable bit; `None` for anything
/// but three (or, when both added, two) text files.
fn text_merge(
    store: &dyn vst_cas::Store,
    conflict: &Conflict,
    spec: &str,
) -> Result<Option<(Vec<u8>, bool, bool)>> {
    let file = |e: &Option<EntryKind>| match e {
        Some(EntryKind::File(f)) => Some(*f),
        _ => None,
    };
    let (Some(o), Some(t)) = (file(&conflict.ours), file(&conflict.theirs)) else {
        return Ok(None);
    };
    let b = file(&conflict.base);
    if conflict.base.is_some() && b.is_none() {
        return Ok(None);
    }
    let text = |f: &vst::FileEntry| -> Result<Option<String>> {
        let bytes = read::read_blob(store, f)?;
        Ok((!bytes.contains(&0)).then(|| String::from_utf8(bytes.to_vec()).ok()).flatten())
    };
    let (Some(ours), Some(theirs)) = (text(&o)?, text(&t)?) else { return Ok(None) };
    let base = match &b {
        Some(b) => match text(b)? {
            Some(text) => text,
            None => return Ok(None),
        },
        None => String::new(),
    };
    let executable = match &b {
        Some(b) if b.executable == o.executable => t.executable,
        _ => o.executable,
    };
    let (merged, conflicted) = merge_lines(&base, &ours, &theirs, "HEAD", spec);
    Ok(Some((merged.into_bytes(), conflicted, executable)))
}

/// One side's change to the base: lines `start..end` of the base become
/// `lines`.
struct Edit<'a> {
    start: usize,
    end: usize,
    lines: Vec<&'a str>,
}

fn edits<'a>(base: &[&'a str], side: &[&'a str]) -> Vec<Edit<'a>> {
    use similar::{DiffOp, capture_diff_slices};
    capture_diff_slices(similar::Algorithm::Myers, base, side)
        .into_iter()
        .filter_map(|op| match op {
            DiffOp::Equal { .. } => None,
            DiffOp::Delete { old_index, old_len, .. } => {
                Some(Edit { start: old_index, end: old_index + old_len, lines: Vec::new() })
            }
            DiffOp::Insert { old_index, new_index, new_len } => Some(Edit {
                start: old_index,
                end: old_index,
                lines: side[new_index..new_index + new_len].to_vec(),
            }),
            DiffOp::Replace { old_index, old_len, new_index, new_len } => Some(Edit {
                start: old_index,
                end: old_index + old_len,
                lines: side[new_index..new_index + new_len].to_vec(),
            }),
        })
        .collect()
}

/// A three-way line merge with git's markers: changes of one side, or the
/// same on both, are taken; changes of both sides that overlap or touch
/// are a conflict. Returns the text and whether it has conflicts.
pub fn merge_lines(
    base: &str,
    ours: &str,
    theirs: &str,
    our_label: &str,
    their_label: &str,
) -> (String, bool) {
    fn split(s: &str) -> Vec<&str> {
        s.split_inclusive('\n').collect()
    }
    let (b, o, t) = (split(base), split(ours), split(theirs));
    let (eo, et) = (edits(&b, &o), edits(&b, &t));
    // Both sides' edits in base order, tagged with their side.
    let mut all: Vec<(usize, &Edit<'_>)> =
        eo.iter().map(|e| (0, e)).chain(et.iter().map(|e| (1, e))).collect();
    all.sort_by_key(|(side, e)| (e.start, e.end, *side));
    let mut out = String::new();
    let mut conflicted = false;
    let mut pos = 0;
    let mut i = 0;
    while i < all.len() {
        // A hunk: edits that overlap or touch, from either side.
        let (start, mut end) = (all[i].1.start, all[i].1.end);
        let mut j = i + 1;
        while j < all.len() && all[j].1.start <= end {
            end = end.max(all[j].1.end);
            j += 1;
        }
        let hunk = &all[i..j];
        let side_text = |side: usize| -> Option<String> {
            let mut text = String::new();
            let mut at = start;
            let mut any = false;
            for (s, e) in hunk.iter().filter(|(s, _)| *s == side) {
                let _ = s;
                text.extend(b[at..e.start].iter().copied());
                text.extend(e.lines.iter().copied());
                at = e.end;
                any = true;
            }
            text.extend(b[at..end].iter().copied());
            any.then_some(text)
        };
        out.extend(b[pos..start].iter().copied());
        match (side_text(0), side_text(1)) {
            (Some(x), None) | (None, Some(x)) => out.push_str(&x),
            (Some(x), Some(y)) if x == y => out.push_str(&x),
            (Some(x), Some(y)) => {
                conflicted = true;
                let line = |s: &mut String, text: &str| {
                    s.push_str(text);
                    if !text.is_empty() && !text.ends_with('\n') {
                        s.push('\n');
                    }
                };
                out.push_str(&format!("<<<<<<< {our_label}\n"));
                line(&mut out, &x);
                out.push_str("=======\n");
                line(&mut out, &y);
                out.push_str(&format!(">>>>>>> {their_label}\n"));
            }
            (None, None) => unreachable!("a hunk holds at least one edit"),
        }
        pos = end;
        i = j;
    }
    out.extend(b[pos..].iter().copied());
    (out, conflicted)
}

/// Writes what the work tree shows for one conflict: the marked text, or
/// their side at `place` (see [`their_place`]).
fn write_conflict(
    store: &dyn vst_cas::Store,
    root: &Path,
    conflict: &Conflict,
    marked: Option<&[u8]>,
    place: Option<&RepoPath>,
) -> Result<()> {
    let full = |p: &RepoPath| root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
    let path = full(&conflict.path);
    if let Some(bytes) = marked {
        return std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()));
    }
    let (Some(theirs), Some(target)) = (&conflict.theirs, place) else {
        // They deleted what we changed: ours stays.
        return Ok(());
    };
    let dest: PathBuf = full(target);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match theirs {
        EntryKind::File(f) => {
            let bytes = read::read_blob(store, f)?;
            std::fs::write(&dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;
            if f.executable {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        EntryKind::Symlink(t) => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t.as_bytes()), &dest)
                .with_context(|| format!("writing {}", dest.display()))?;
        }
        EntryKind::Dir(tree) => {
            vst::checkout(store, *tree, &dest)
                .with_context(|| format!("writing {}", dest.display()))?;
        }
    }
    Ok(())
}

/// `vst merge --abort`: the work tree back at `HEAD`, the merge state and
/// the side files gone.
fn abort_merge(cli: &Cli, worktree: &mut WorkTree) -> Result<ExitCode> {
    let repo_dir = worktree.repo().dir().to_owned();
    let Some(state) = MergeState::read(&repo_dir).ok().flatten() else {
        if std::fs::symlink_metadata(repo_dir.join(MERGE_STATE)).is_ok() {
            MergeState::remove(&repo_dir)?;
            bail!(
                "the merge state in {} could not be read, so what the merge wrote is unknown; it is removed, and nothing else was changed: `vst status` shows what differs from HEAD, `vst reset --hard HEAD` brings every tracked file back",
                repo_dir.display()
            );
        }
        bail!("no merge is in progress");
    };
    let root = worktree.root().to_owned();
    for p in &state.side_files {
        let full = root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
        let _ = std::fs::remove_dir_all(&full).or_else(|_| std::fs::remove_file(&full));
    }
    let Some(ours) = worktree.head() else { bail!("HEAD has no commit") };
    // Only what the merge touched goes back to HEAD (what it wrote, and
    // the conflicts, resolved or not): local changes elsewhere stay.
    let store = worktree.repo().store();
    let ours_tree = read::read_commit(store.as_ref(), ours)?.tree;
    let merged_tree = read::read_commit(store.as_ref(), state.merged)?.tree;
    let mut touched: Vec<RepoPath> =
        vst::diff_trees(store.as_ref(), Some(ours_tree), Some(merged_tree))?
            .into_iter()
            .map(|c| c.path)
            .chain(state.conflicts.iter().cloned())
            .collect();
    touched.sort();
    touched.dedup();
    worktree.restore(ours_tree, &touched, &CheckoutOptions::default())?;
    save_index(worktree);
    MergeState::remove(&repo_dir)?;
    if !cli.quiet {
        writeln!(out(), "merge of {} aborted: the work tree is at HEAD again", state.spec)?;
    }
    Ok(ExitCode::SUCCESS)
}
