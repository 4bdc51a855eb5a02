//! Figures shared by the benchmarks' reports, and the generated sections of docs/: each is
//! kept between an opening and a closing HTML comment and replaced in place when re-run.

use std::path::Path;

use anyhow::Context as _;

/// The host as the reports name it: CPU model × cores, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    format!("host: {} × {cores}, Linux {kernel}", model.unwrap_or("unknown CPU"))
}

/// Exact quantile `q` of `sorted` (nearest rank), signed values kept; NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Puts `section` (which starts with `markers.0` and ends with `markers.1`) in place of the text
/// between those markers in `docs`, or appends it.
pub fn write_between(docs: &Path, markers: (&str, &str), section: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(docs).with_context(|| format!("reading {}", docs.display()))?;
    std::fs::write(docs, replace_section(&text, markers, section))
        .with_context(|| format!("writing {}", docs.display()))
}

fn replace_section(text: &str, (begin_marker, end_marker): (&str, &str), section: &str) -> String {
    match (text.find(begin_marker), text.find(end_marker)) {
        (Some(begin), Some(end)) if end > begin => {
            format!("{}{}{}", &text[..begin], section.trim_end(), &text[end + end_marker.len()..])
        }
        _ => format!("{}\n\n{section}", text.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- begin -->";
    const END: &str = "<!-- end -->";

    #[test]
    fn the_section_is_replaced_in_place() {
        let first = replace_section("# Benchmarks\n\nintro\n", (BEGIN, END), &format!("{BEGIN}\nold\n{END}\n"));
        let second = replace_section(&(first.clone() + "\ntail\n"), (BEGIN, END), &format!("{BEGIN}\nnew\n{END}\n"));
        assert!(second.contains("intro") && second.contains("new") && second.contains("tail"), "{second}");
        assert!(!second.contains("old"), "{second}");
        assert_eq!(second.matches(BEGIN).count(), 1);
    }
}
