//! The licences of what the agent links: its binaries are MIT OR Apache-2.0 and statically
//! linked, so every crate in them must allow that (no copyleft; btf-rs, LGPL-2.1-or-later, was
//! replaced by btfparse, Apache-2.0, for this reason). Checked on the resolved dependency graph,
//! so a new dependency with another licence fails the suite. The kernel program is MIT OR
//! GPL-2.0-only, as its object's `license` section tells the kernel ("Dual MIT/GPL"), and links
//! only crates that allow both.

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

    /// (package, licence expression) of everything `package`'s binaries link, itself first.
    fn linked_packages(package: &str) -> Vec<(String, String)> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["tree", "--package", package, "--edges", "normal", "--prefix", "none"])
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
        allowed_under(expression, PERMISSIVE)
    }

    /// Whether `expression` can be satisfied choosing only among `licences`.
    fn allowed_under(expression: &str, licences: &[&str]) -> Result<bool, String> {
        let parsed = spdx::Expression::parse_mode(expression, spdx::ParseMode::LAX).map_err(|e| e.to_string())?;
        Ok(parsed.evaluate(|req| match &req.license {
            spdx::LicenseItem::Spdx { id, .. } => licences.contains(&id.name),
            spdx::LicenseItem::Other { .. } => false,
        }))
    }

    #[test]
    fn the_kernel_program_is_gpl_compatible_as_its_object_says_and_links_permissive_crates() {
        let packages = linked_packages("netvsc-ebpf");
        let (own, linked) = packages.split_first().expect("netvsc-ebpf itself");
        assert!(own.0.starts_with("netvsc-ebpf "), "{own:?}");
        // "Dual MIT/GPL" in the object: the crate must be available under GPL-2.0 and under MIT.
        assert_eq!(allowed_under(&own.1, &["GPL-2.0-only"]), Ok(true), "{own:?}");
        assert_eq!(allowed_under(&own.1, &["MIT"]), Ok(true), "{own:?}");
        let source = std::fs::read_to_string(crate::workspace::root().join("netvsc-ebpf/src/main.rs")).unwrap();
        assert!(source.contains(r#"*b"Dual MIT/GPL\0""#), "the object's licence string changed: update the crate's");
        for text in ["LICENSE-MIT", "LICENSE-GPL-2.0", "LICENSE-APACHE"] {
            assert!(crate::workspace::root().join(text).is_file(), "{text} missing at the repository's root");
        }
        assert!(linked.len() >= 3, "aya-ebpf and its crates: {linked:?}");
        let refused: Vec<_> = linked.iter().filter(|(_, license)| allowed(license) != Ok(true)).collect();
        assert!(refused.is_empty(), "the kernel program links non-permissive crates: {refused:?}");
    }

    #[test]
    fn the_agent_links_only_permissively_licensed_crates() {
        let packages = linked_packages("netvsc-user");
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
