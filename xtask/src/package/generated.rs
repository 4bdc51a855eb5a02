//! The man pages and shell completions, generated from the agent's own clap definitions
//! (`netvsc_user::agent::cli::Cli`), so they say exactly what `--help` says.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

/// The agent's command line as clap builds it.
pub fn command() -> clap::Command {
    netvsc_user::agent::cli::Cli::command()
}

/// Writes `dir/man/*.1.gz` (netvsc-watch.1 and one page per subcommand, netvsc-watch-scan.1 ...)
/// and `dir/completions/{netvsc-watch.bash,_netvsc-watch,netvsc-watch.fish}`, replacing what a
/// previous run left. Returns the files written.
pub fn write(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let man = dir.join("man");
    let completions = dir.join("completions");
    for sub in [&man, &completions] {
        std::fs::create_dir_all(sub).with_context(|| format!("creating {}", sub.display()))?;
    }
    let mut written = Vec::new();
    for (name, page) in man_pages()? {
        let path = man.join(format!("{name}.1.gz"));
        std::fs::write(&path, gzip(&page)?).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut command(), "netvsc-watch", &completions)
            .with_context(|| format!("writing the {shell} completion into {}", completions.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// (page name, roff text) for the command and each visible subcommand.
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = command();
    cmd.build();
    let mut pages = vec![("netvsc-watch".to_owned(), render(cmd.clone())?)];
    for sub in documented(&cmd) {
        let name = format!("netvsc-watch-{}", sub.get_name());
        // The page's title and synopsis name the full command, as `git-commit(1)` does. clap
        // takes a `&'static str` name without its `string` feature, which would rebuild clap
        // for the agent too; a handful of leaked names in a build tool is cheaper.
        let static_name: &'static str = Box::leak(name.clone().into_boxed_str());
        let sub = sub.clone().name(static_name).bin_name(format!("netvsc-watch {}", sub.get_name()));
        pages.push((name, render(sub)?));
    }
    Ok(pages)
}

/// The subcommands that get a page: the visible ones, without clap's own `help`.
pub fn documented(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
}

fn render(cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page).context("rendering the man page")?;
    Ok(page)
}

/// Gzip without a timestamp, so the same source gives the same bytes.
fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every long option of every subcommand, as `--help` lists them.
    fn long_options(cmd: &clap::Command) -> Vec<String> {
        cmd.get_arguments().filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long()).map(str::to_owned).collect()
    }

    #[test]
    fn each_subcommand_has_a_page_naming_every_option_of_its_help() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            ["netvsc-watch", "netvsc-watch-scan", "netvsc-watch-watch", "netvsc-watch-exec", "netvsc-watch-monitor"]
        );
        let mut cmd = command();
        cmd.build();
        for sub in documented(&cmd) {
            let wanted = format!("netvsc-watch-{}", sub.get_name());
            let (_, page) = pages.iter().find(|(name, _)| *name == wanted).unwrap();
            // roff escapes every '-' as '\-'.
            let page = String::from_utf8(page.clone()).unwrap().replace("\\-", "-");
            let options = long_options(sub);
            assert!(options.len() >= 5, "{}: {options:?}", sub.get_name());
            for option in options {
                assert!(page.contains(&format!("--{option}")), "netvsc-watch-{} lacks --{option}", sub.get_name());
            }
        }
    }

    #[test]
    fn the_completions_offer_every_subcommand_and_option() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path()).unwrap();
        let bash = std::fs::read_to_string(dir.path().join("completions/netvsc-watch.bash")).unwrap();
        let fish = std::fs::read_to_string(dir.path().join("completions/netvsc-watch.fish")).unwrap();
        assert!(dir.path().join("completions/_netvsc-watch").is_file());
        assert_eq!(files.len(), 5 + 3, "five man pages, three shells: {files:?}");
        let mut cmd = command();
        cmd.build();
        for sub in documented(&cmd) {
            for option in long_options(sub) {
                assert!(bash.contains(&format!("--{option}")), "bash lacks {} --{option}", sub.get_name());
                assert!(fish.contains(&format!("-l {option}")), "fish lacks {} --{option}", sub.get_name());
            }
        }
    }
}
