//! The licences of what the agent links: its binaries are MIT OR Apache-2.0 and statically
//! linked, so every crate in them must allow that (no copyleft; btf-rs, LGPL-2.1-or-later, was
//! replaced by btfparse, Apache-2.0, for this reason). Checked on the resolved dependency graph,
//! so a new dependency with another licence fails the suite.

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// Licences that allow static linking into an MIT OR Apache-2.0 binary without conditions
    /// beyond keeping notices.
    const PERMISSIVE: &[&str] = &[
        "MIT",
        "Apache-2.0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "ISC",
        "Zlib",
        "Unlicense",
        "0BSD",
        "CC0-1.0",
        "Unicode-3.0",
        "Unicode-DFS-2016",
    ];

    /// (package, licence expression) of everything the agent's binaries link.
    fn linked_packages() -> Vec<(String, String)> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["tree", "--package", "netvsc-user", "--edges", "normal", "--prefix", "none"])
            .args(["--format", "{p}|{l}"])
            .current_dir(crate::workspace::root())
            .output()
            .expect("running cargo tree");
        assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| line.trim_end_matches(" (*)").split_once('|'))
            .map(|(package, license)| (package.to_owned(), license.to_owned()))
            .collect()
    }

    fn allowed(expression: &str) -> Result<bool, String> {
        let parsed = spdx::Expression::parse_mode(expression, spdx::ParseMode::LAX).map_err(|e| e.to_string())?;
        Ok(parsed.evaluate(|req| match &req.license {
            spdx::LicenseItem::Spdx { id, .. } => PERMISSIVE.contains(&id.name),
            spdx::LicenseItem::Other { .. } => false,
        }))
    }

    #[test]
    fn the_agent_links_only_permissively_licensed_crates() {
        let packages = linked_packages();
        assert!(packages.len() > 50, "too few packages: {packages:?}");
        let refused: Vec<_> = packages.iter().filter(|(_, license)| allowed(license) != Ok(true)).collect();
        assert!(refused.is_empty(), "not permissively licensed (or no licence): {refused:?}");
    }

    #[test]
    fn copyleft_is_refused_and_a_permissive_choice_accepted() {
        assert_eq!(allowed("LGPL-2.1-or-later"), Ok(false));
        assert_eq!(allowed("GPL-2.0 OR MIT"), Ok(true), "a choice that includes MIT is fine");
        assert_eq!(allowed("MIT AND GPL-3.0"), Ok(false));
        assert_eq!(allowed("MIT/Apache-2.0"), Ok(true), "the old slash form");
        assert_eq!(allowed("(MIT OR Apache-2.0) AND Unicode-3.0"), Ok(true));
    }
}
