//! Build metadata for `promrelay_build_info` and `promrelay --version`: the git revision and the
//! compiler version, which can only be known when the binary is built.
//!
//! `PROMRELAY_REVISION` in the environment wins (for builds from a source tarball, where there
//! is no git); otherwise `git rev-parse HEAD`, or `unknown` without git.

use std::path::Path;
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PROMRELAY_REVISION");
    let revision = std::env::var("PROMRELAY_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| output("git", &["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .map(|v| v.trim_start_matches("rustc ").to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PROMRELAY_REVISION={revision}");
    println!("cargo:rustc-env=PROMRELAY_RUSTC={rustc_version}");
    // Build again when HEAD moves (a commit, a checkout): HEAD itself, the branch it points to,
    // and packed refs. Only existing paths: a missing one would make every build rerun this.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = output("git", &["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
