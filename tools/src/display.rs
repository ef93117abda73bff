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

/// Go-style duration text (as `bbolt bench` prints it): 1.5s, 250ms, 68ns.
pub fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", trim(ns as f64 / 1e3))
    } else if ns < 1_000_000_000 {
        format!("{}ms", trim(ns as f64 / 1e6))
    } else {
        format!("{}s", trim(ns as f64 / 1e9))
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
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
    }
}
