//! Keeping the repository sound: `vst fsck`, `vst gc`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use vst::ReadData;
use vst_cas::{Access, GcMode};

use crate::args::Cli;
use crate::output::out;
use crate::workspace::{find, open, spinner};

/// `vst fsck`.
pub fn fsck(cli: &Cli, read_data: bool) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadOnly)?;
    let bar =
        spinner(if read_data { "checking every object and byte" } else { "checking every object" });
    let report = repo.fsck(if read_data { ReadData::Yes } else { ReadData::No });
    bar.finish_and_clear();
    let report = report?;
    let mut out = out();
    for p in &report.problems {
        writeln!(out, "{} {}: {}", p.kind, p.id, p.error)?;
    }
    for (name, e) in &report.bad_refs {
        writeln!(out, "ref {name}: {e}")?;
    }
    for pack in &report.damaged_packs {
        writeln!(out, "pack {pack}: damaged records")?;
    }
    for (id, e) in &report.damaged_records {
        writeln!(out, "record {id}: {e}")?;
    }
    if report.is_clean() {
        if !cli.quiet {
            writeln!(
                out,
                "ok: {} commits, {} trees, {} blobs",
                report.commits, report.trees, report.blobs
            )?;
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// `vst gc`.
pub fn gc(cli: &Cli, dry_run: bool, grace_hours: u64) -> Result<ExitCode> {
    let ws = find(cli)?;
    let repo = open(&ws, Access::ReadWrite)?;
    let mode = if dry_run { GcMode::DryRun } else { GcMode::Collect };
    let bar = spinner("collecting garbage");
    let stats = repo.gc(std::time::Duration::from_secs(grace_hours.saturating_mul(3600)), mode);
    bar.finish_and_clear();
    let stats = stats?;
    if !cli.quiet {
        let verb = if dry_run { "would remove" } else { "removed" };
        writeln!(
            out(),
            "{verb} {} records, kept {}; packs {} -> {} bytes",
            stats.records_removed,
            stats.records_kept,
            stats.bytes_before,
            stats.bytes_after
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
