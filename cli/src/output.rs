//! Output: standard output, the one status vocabulary, dates and
//! commits as JSON.

use serde_json::json;
use vst::CommitId;

/// Standard output, locked.
pub fn out() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

/// A commit as JSON (the `log` shape).
pub fn commit_json(id: CommitId, c: &vst::Commit) -> serde_json::Value {
    json!({
        "commit": id.to_string(),
        "tree": c.tree.to_string(),
        "parents": c.parents.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "author": c.author,
        "time_unix_us": c.time.unix_us,
        "message": c.message,
    })
}

/// `unix_us` as `YYYY-MM-DD HH:MM:SS UTC` (days to civil date after Howard
/// Hinnant's algorithm; a date library for one line of output is not worth
/// a dependency).
pub fn utc(unix_us: i64) -> String {
    let secs = unix_us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The one vocabulary of `--json` statuses.
pub fn status_word(letter: char) -> &'static str {
    match letter {
        'A' => "added",
        'D' => "deleted",
        'M' => "modified",
        _ => "type_changed",
    }
}

/// The letter of a `--json` status word.
pub fn status_letter(word: &str) -> char {
    match word {
        "added" => 'A',
        "deleted" => 'D',
        "modified" => 'M',
        _ => 'T',
    }
}

/// The letter of a change.
pub fn letter(kind: vst::ChangeKind) -> char {
    match kind {
        vst::ChangeKind::Added => 'A',
        vst::ChangeKind::Removed => 'D',
        vst::ChangeKind::Modified => 'M',
        vst::ChangeKind::TypeChanged => 'T',
    }
}

/// A commit id (hex) as messages show it; `None`: no commit.
pub fn short(id: Option<&str>) -> String {
    id.map_or_else(|| "no commit".to_owned(), |id| format!("{id:.12}"))
}
