//! The process's memory settings for mimalloc (the global allocator of the
//! `pipe` binary and of the benches, which call `tune` too so their figures
//! are the binary's).
//!
//! Guarantees: `tune` is idempotent, and an operator's `MIMALLOC_PURGE_DELAY`
//! or `MIMALLOC_ALLOW_THP` always wins over pipe's choice.

/// `mi_option_purge_delay`: its position in mimalloc v3's `mi_option_t`
/// (mimalloc.h). libmimalloc-sys names only the v2 positions; the test
/// below checks this one against the option's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays with the process before mimalloc returns it
/// to the OS, in milliseconds; jemalloc's default decay time. mimalloc's own
/// default (1 s) is shorter than the time a batch spends between the source
/// and Splunk's acknowledgement, so memory went back to the OS and was
/// faulted in (zeroed) again for the next batch: a fifth of the process's
/// CPU time in the SLS to Splunk profile (BENCHMARKS.md).
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Applies pipe's memory settings, each unless the operator set mimalloc's
/// own variable for it, which wins:
/// - the purge delay above;
/// - no transparent huge pages for this process (Linux). With THP, every
///   first touch of an arena region faulted in and zeroed 2 MB at once:
///   peak RSS of the SLS to Splunk run fell from about 420 to 310 MiB and
///   its CPU time by a tenth without them (BENCHMARKS.md). Databases with
///   the same allocation pattern (Redis, MongoDB) advise the same.
///   `MIMALLOC_ALLOW_THP=1` keeps them.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option is allowed at any time; mimalloc reads
        // it on every purge decision.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes one integer argument and only
        // sets a flag of this process; a failure (an old kernel) leaves THP
        // as the system configures it, which is harmless.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test for both settings: `tune` is process-wide, so a second test
    /// calling it could run before this one reads the default. Position 15
    /// is the purge delay only if it holds that option's default (1000 ms in
    /// mimalloc v3); a libmimalloc-sys that bundles another mimalloc fails
    /// here instead of tuning the wrong option.
    #[test]
    fn tune_sets_the_purge_delay_and_turns_transparent_huge_pages_off() {
        let purge_delay_from_env = std::env::var_os("MIMALLOC_PURGE_DELAY").is_some();
        if !purge_delay_from_env {
            // SAFETY: reading an option has no preconditions.
            let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(default, 1000, "mi_option_t position {MI_OPTION_PURGE_DELAY} is not purge_delay");
        }
        tune();
        if !purge_delay_from_env {
            // SAFETY: as above.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, PURGE_DELAY_MS);
        }
        #[cfg(target_os = "linux")]
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // SAFETY: PR_GET_THP_DISABLE takes no argument and reads a flag.
            assert_eq!(unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) }, 1);
        }
    }
}
