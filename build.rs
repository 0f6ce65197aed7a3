//! Embeds the git commit and build time for `--version`.

use std::process::Command;

/// What `git` prints for `args`, trimmed; `None` outside a git checkout.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=INFLUX_PROXY_GIT_COMMIT={commit}");
    // Asked of git rather than spelled `.git/HEAD`: in a worktree `.git` is a file, and a path
    // that does not exist makes cargo rerun this script, so recompile the crate, on every build.
    // Only this checkout's branch: watching all of refs/heads rebuilt the crate whenever another
    // worktree committed.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref());
    for path in watched {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
