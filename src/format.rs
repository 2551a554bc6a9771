//! How numbers and dates read in pages.

use time::{Date, OffsetDateTime};

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `1234567` cents in `EUR` → `€12,345.67`.
pub fn money(cents: i64, currency: &str) -> String {
    let symbol = match currency {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        _ => "",
    };
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let units = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let amount = format!("{grouped}.{:02}", abs % 100);
    if symbol.is_empty() { format!("{sign}{amount} {currency}") } else { format!("{sign}{symbol}{amount}") }
}

/// 2000 → "2,000".
pub fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12 Nov 2026`.
pub fn date(d: Date) -> String {
    format!("{} {} {}", d.day(), MONTHS[usize::from(u8::from(d.month())) - 1], d.year())
}

/// `12 Nov 2026, 14:05` (UTC).
pub fn datetime(t: OffsetDateTime) -> String {
    format!("{}, {:02}:{:02}", date(t.date()), t.hour(), t.minute())
}

/// RFC 3339, for `<time datetime>`.
pub fn iso(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// `3 minutes ago`, `yesterday`, `12 Nov 2026`.
pub fn ago(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - t).whole_seconds();
    match secs {
        s if s < 60 => "just now".to_owned(),
        s if s < 3600 => plural(s / 60, "minute"),
        s if s < 86_400 => plural(s / 3600, "hour"),
        s if s < 2 * 86_400 => "yesterday".to_owned(),
        s if s < 7 * 86_400 => format!("{} days ago", s / 86_400),
        _ => date(t.date()),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") }
}

/// A document type as people say it.
pub fn doc_type(t: &str) -> &'static str {
    match t {
        "contract" => "Contract",
        "certificate" => "Certificate",
        "report" => "Report",
        "artwork" => "Artwork",
        "invoice_copy" => "Invoice copy",
        "purchase_order" => "Purchase order",
        _ => "Other",
    }
}

/// `1.4 MB`.
pub fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    match n {
        n if n < 1024.0 => format!("{n} B"),
        n if n < 1024.0 * 1024.0 => format!("{:.1} KB", n / 1024.0),
        n if n < 1024.0 * 1024.0 * 1024.0 => format!("{:.1} MB", n / 1024.0 / 1024.0),
        n => format!("{:.1} GB", n / 1024.0 / 1024.0 / 1024.0),
    }
}

/// A width class (`w-0` … `w-100`, steps of 10) for bars, since the CSP forbids inline styles.
pub fn width_class(part: i64, whole: i64) -> &'static str {
    const CLASSES: [&str; 11] =
        ["w-0", "w-10", "w-20", "w-30", "w-40", "w-50", "w-60", "w-70", "w-80", "w-90", "w-100"];
    if whole <= 0 || part <= 0 {
        return CLASSES[0];
    }
    let tenths = ((part.min(whole) * 10 + whole / 2) / whole).clamp(1, 10);
    CLASSES[tenths as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(7), "7");
        assert_eq!(group(999), "999");
        assert_eq!(group(4000), "4,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn money_reads_naturally() {
        assert_eq!(money(123_456_789, "EUR"), "€1,234,567.89");
        assert_eq!(money(5, "USD"), "$0.05");
        assert_eq!(money(-100_000, "GBP"), "-£1,000.00");
        assert_eq!(money(1999, "CHF"), "19.99 CHF");
    }

    #[test]
    fn dates_read_naturally() {
        assert_eq!(date(date!(2026 - 06 - 03)), "3 Jun 2026");
        let now = datetime!(2026-11-24 12:00 UTC);
        assert_eq!(ago(datetime!(2026-11-24 11:59:30 UTC), now), "just now");
        assert_eq!(ago(datetime!(2026-11-24 11:00 UTC), now), "1 hour ago");
        assert_eq!(ago(datetime!(2026-11-21 12:00 UTC), now), "3 days ago");
        assert_eq!(ago(datetime!(2026-10-01 08:00 UTC), now), "1 Oct 2026");
    }

    #[test]
    fn bars_never_vanish_or_overflow() {
        assert_eq!(width_class(0, 10), "w-0");
        assert_eq!(width_class(1, 100), "w-10");
        assert_eq!(width_class(5, 10), "w-50");
        assert_eq!(width_class(20, 10), "w-100");
        assert_eq!(bytes(1536), "1.5 KB");
    }
}
