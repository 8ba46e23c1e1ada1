//! The process's open-files limit (`ulimit -n`): read for the listeners' connection caps
//! (`conn::connection_caps`), and raised to the hard limit at start.

/// What [`raise_open_files_limit`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenFilesLimit {
    /// Raised from `before` to `after`: the hard limit, or the kernel's `fs.nr_open` when that
    /// is lower (`by_nr_open`; an unlimited hard limit still stops there).
    Raised {
        before: u64,
        after: u64,
        by_nr_open: bool,
    },
    /// Already at the hard limit, or unlimited.
    Unchanged,
    /// The kernel refused (a container's seccomp profile, for one): the soft limit stays.
    Refused { soft: u64, error: String },
}

/// Raise the soft limit on open files (`ulimit -n`) to the hard limit, as Go programs such as
/// Prometheus and vmagent do at start. Distributions leave the soft limit at 1,024 for programs
/// that still use `select`, which the relay does not; at 1,024, a relay with a few dozen targets
/// keeps nearly every descriptor in reserve for its lanes (`connection_caps`) and serves
/// one connection at a time. The hard limit is the administrator's and is left as it is.
pub fn raise_open_files_limit() -> OpenFilesLimit {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let Some(current) = current else {
        return OpenFilesLimit::Unchanged;
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let (wanted, by_nr_open) = match (maximum, nr_open) {
        (Some(hard), Some(n)) => (hard.min(n), n < hard),
        (Some(hard), None) => (hard, false),
        (None, Some(n)) => (n, true),
        (None, None) => return OpenFilesLimit::Unchanged,
    };
    if wanted <= current {
        return OpenFilesLimit::Unchanged;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(wanted),
            maximum,
        },
    ) {
        Ok(()) => OpenFilesLimit::Raised {
            before: current,
            after: wanted,
            by_nr_open,
        },
        Err(e) => OpenFilesLimit::Refused {
            soft: current,
            error: e.to_string(),
        },
    }
}

/// The soft limit on open files (`ulimit -n`); `None` when unlimited.
pub fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}
