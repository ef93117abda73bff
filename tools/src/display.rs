//! How keys and values are printed: as text when printable, else hex.

/// Output format of keys and values, like the bbolt CLI's --format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// Printable ASCII as is, anything else escaped.
    #[default]
    AsciiEncoded,
    /// Lowercase hex.
    Hex,
    /// The raw bytes.
    Bytes,
}

pub fn render(bytes: &[u8], f: Format) -> String {
    match f {
        Format::Hex => hex(bytes),
        Format::Bytes => String::from_utf8_lossy(bytes).into_owned(),
        Format::AsciiEncoded => bytes
            .iter()
            .flat_map(|&b| std::ascii::escape_default(b))
            .map(char::from)
            .collect(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A duration as Go's `time.Duration.String` prints it (what bbolt's and
/// etcd's tools print): `68ns`, `2.5µs`, `1.5ms`, `1.5s`, `1m30s`,
/// `1h0m0s`; exact to the nanosecond, trailing zeros dropped.
pub fn go_duration(d: std::time::Duration) -> String {
    const US: u128 = 1_000;
    const MS: u128 = 1_000_000;
    const S: u128 = 1_000_000_000;
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < US {
        return format!("{ns}ns");
    }
    if ns < MS {
        return format!("{}{}µs", ns / US, fraction(ns % US, 3));
    }
    if ns < S {
        return format!("{}{}ms", ns / MS, fraction(ns % MS, 6));
    }
    let secs = ns / S;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}{}s", fraction(ns % S, 9)));
    out
}

/// `.ddd` for a remainder of `digits` decimal places, trailing zeros
/// dropped ("" when zero).
fn fraction(rem: u128, digits: usize) -> String {
    if rem == 0 {
        return String::new();
    }
    let text = format!("{rem:0digits$}");
    format!(".{}", text.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(render(b"ab\x01", Format::AsciiEncoded), "ab\\x01");
        assert_eq!(render(b"\x01\xff", Format::Hex), "01ff");
        assert_eq!(go_duration(std::time::Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(std::time::Duration::from_nanos(68)), "68ns");
        assert_eq!(go_duration(std::time::Duration::from_micros(2500)), "2.5ms");
        let d = std::time::Duration::from_secs;
        // Go's own outputs for the same values.
        assert_eq!(go_duration(d(90)), "1m30s");
        assert_eq!(go_duration(d(3600)), "1h0m0s");
        assert_eq!(go_duration(d(3661)), "1h1m1s");
        assert_eq!(go_duration(d(0)), "0s");
        assert_eq!(
            go_duration(std::time::Duration::from_nanos(1_234_567_891)),
            "1.234567891s"
        );
        assert_eq!(go_duration(std::time::Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(
            go_duration(std::time::Duration::from_nanos(61_000_000_001)),
            "1m1.000000001s"
        );
    }
}
