//! Docker's human-readable output: durations ("About a minute"), sizes
//! ("5.59MB"), container status ("Exited (0) 3 seconds ago") and
//! column-aligned tables.

use chrono::{DateTime, Utc};

/// docker's `units.HumanDuration`: how long ago, in words.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = d.num_minutes();
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (d.num_seconds() as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", d.num_hours() / 24 / 365)
}

/// "3 seconds ago", as the CREATED columns show it.
pub fn ago(when: DateTime<Utc>) -> String {
    format!("{} ago", human_duration(Utc::now() - when))
}

/// docker's memory sizes (`units.BytesSize`): binary units, two decimals
/// at most ("1.5KiB", "23.47GiB").
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    let text = format!("{size:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{}", UNITS[unit])
}

/// docker's SIZE columns (`units.HumanSizeWithPrecision(size, 3)`): SI
/// units, three significant digits ("5.59MB").
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", format_g3(size), UNITS[unit])
}

/// Go's `%.3g` for the magnitudes human_size produces (0 <= x < 1000),
/// including its exponent form when rounding reaches 1000 ("1e+03").
fn format_g3(x: f64) -> String {
    let digits_before_point = if x < 1.0 {
        1
    } else {
        (x.log10().floor() as usize) + 1
    };
    let decimals = 3usize.saturating_sub(digits_before_point);
    let text = format!("{x:.decimals$}");
    if text.parse::<f64>().is_ok_and(|rounded| rounded >= 1000.0) {
        return "1e+03".to_string();
    }
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Print rows as docker's tabwriter does (minimum width 10, padding 3):
/// each column as wide as its widest cell plus three spaces, and at least 10
/// characters; the last column is not padded, trailing spaces are trimmed.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = (widths[i] + 3).max(10) - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

/// Shorten `text` to `max` characters with docker's ellipsis ("…").
pub fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn binary_sizes_read_like_dockers() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1536), "1.5KiB");
        assert_eq!(binary_size(25_200_000_000), "23.47GiB");
    }

    #[test]
    fn durations_read_as_docker_prints_them() {
        assert_eq!(
            human_duration(Duration::milliseconds(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::seconds(1)), "1 second");
        assert_eq!(human_duration(Duration::seconds(59)), "59 seconds");
        assert_eq!(human_duration(Duration::seconds(90)), "About a minute");
        assert_eq!(human_duration(Duration::minutes(59)), "59 minutes");
        assert_eq!(human_duration(Duration::minutes(80)), "About an hour");
        assert_eq!(human_duration(Duration::hours(30)), "30 hours");
        assert_eq!(human_duration(Duration::days(5)), "5 days");
        assert_eq!(human_duration(Duration::days(20)), "2 weeks");
        assert_eq!(human_duration(Duration::days(100)), "3 months");
        assert_eq!(human_duration(Duration::days(800)), "2 years");
    }

    #[test]
    fn sizes_use_si_units_with_three_digits() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(5_591_000), "5.59MB");
        assert_eq!(human_size(4_261_412), "4.26MB");
        assert_eq!(human_size(124_000_000), "124MB");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(human_size(728_000), "728kB");
        assert_eq!(human_size(1_230_000_000), "1.23GB");
        assert_eq!(human_size(10_500_000), "10.5MB");
        assert_eq!(
            human_size(999_999),
            "1e+03kB",
            "Go's %.3g, as docker prints it"
        );
    }

    #[test]
    fn tables_align_columns_with_three_spaces() {
        let out = table(&["A", "LONGER"], &[vec!["xyz1".into(), "v".into()]]);
        assert_eq!(
            out, "A         LONGER\nxyz1      v\n",
            "narrow columns are 10 wide"
        );
        let out = table(
            &["REPOSITORY", "TAG", "SIZE"],
            &[vec!["busybox".into(), "latest".into(), "4.26MB".into()]],
        );
        assert_eq!(
            out,
            "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n"
        );
        let out = table(&["A", "B"], &[vec!["x".into(), "".into()]]);
        assert_eq!(out, "A         B\nx\n", "no trailing spaces");
    }

    #[test]
    fn ellipsis_shortens_long_commands() {
        assert_eq!(ellipsis("short", 20), "short");
        assert_eq!(ellipsis("\"sleep 1000000000000\"", 10), "\"sleep 10…");
    }
}
