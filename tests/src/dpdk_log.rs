//! Reading what DPDK's fail-safe and vdev_netvsc PMDs log, in every release the tests run (the
//! host interop tests on 22.11 and 24.11, the QEMU guest's testpmd on 22.11): one reader, so the
//! release differences are handled once. 22.11 prefixes a PMD's lines with its lower-case
//! logtype (`net_failsafe: `, `net_vdev_netvsc: `); 24.11 with an upper-case name
//! (`NET_FAILSAFE: `, `VDEV_NETVSC: `).

const FAILSAFE: &[&str] = &["net_failsafe"];
const VDEV_NETVSC: &[&str] = &["net_vdev_netvsc", "vdev_netvsc"];

/// What follows `<logtype>: ` on `line` if a PMD known by one of `logtypes` wrote it.
fn pmd_text<'a>(line: &'a str, logtypes: &[&str]) -> Option<&'a str> {
    let (head, rest) = line.split_once(": ")?;
    logtypes.iter().any(|logtype| head.eq_ignore_ascii_case(logtype)).then_some(rest)
}

/// The device string of fail-safe's debug line `net_failsafe: <devargs>`, written when it has
/// parsed a sub-device (read from its pipe, a command's output or a `dev()`); `None` for every
/// other line (its sentences have spaces).
pub fn failsafe_parsed(line: &str) -> Option<&str> {
    pmd_text(line, FAILSAFE).filter(|rest| !rest.contains(' ') && !rest.is_empty())
}

/// The device strings fail-safe parsed, in order.
pub fn parsed(log: &str) -> Vec<&str> {
    log.lines().filter_map(failsafe_parsed).collect()
}

/// What vdev_netvsc said of each instance it was invoked as (`invoked as "<name>", using
/// arguments "<args>"`): the text after `invoked as `.
pub fn vdev_netvsc_invoked(log: &str) -> Vec<&str> {
    log.lines().filter_map(|line| pmd_text(line, VDEV_NETVSC)?.strip_prefix("invoked as ")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_releases_prefixes_are_read() {
        // Lines as Debian's 22.11.11 and 24.11.8 testpmd print them.
        let log = "net_failsafe: 0002:00:02.0\n\
                   NET_FAILSAFE: 0003:00:02.0\n\
                   net_failsafe: Switching tx_dev to sub_device 1\n\
                   TAP: net_failsafe: 0004:00:02.0\n\
                   net_vdev_netvsc: invoked as \"net_vdev_netvsc0\", using arguments \"ignore=1\"\n\
                   VDEV_NETVSC: invoked as \"net_vdev_netvsc1\", using arguments \"\"\n";
        assert_eq!(parsed(log), ["0002:00:02.0", "0003:00:02.0"], "sentences and other PMDs' lines are not devargs");
        assert_eq!(
            vdev_netvsc_invoked(log),
            [r#""net_vdev_netvsc0", using arguments "ignore=1""#, r#""net_vdev_netvsc1", using arguments """#]
        );
        assert_eq!(failsafe_parsed("net_failsafe: "), None);
    }
}
