//! Flags that must agree with each other. clap checks each flag's value as it parses it; what it
//! cannot check flag by flag (a bound below another, a setting that the mode chosen ignores) a
//! binary's [`Check`] checks once, while turning its flags into the settings they stand for. A
//! contradiction stops the binary as a bad value does: a usage error naming the flags, exit code 2,
//! before any data is read or connection opened.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Parser};

/// Flags that contradict each other, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Contradiction(String);

impl Contradiction {
    /// Says which flags contradict which: name them as clap does, `'--flag'`.
    pub fn new(why: impl Into<String>) -> Self {
        Contradiction(why.into())
    }
}

/// Which flags were given, on the command line or through their environment variable, rather
/// than left at their defaults.
pub struct Given<'a>(&'a ArgMatches);

impl Given<'_> {
    /// Whether the flag of field `id` (e.g. `gate_alpha` for `--gate-alpha`) was given.
    pub fn contains(&self, id: &str) -> bool {
        matches!(
            self.0.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    }
}

/// A binary's flags, made into its settings (`Flags` → [`Check::check`] → its settings): the one
/// place where the flags are checked against each other.
pub trait Check: Parser {
    type Valid;
    fn check(self, given: &Given) -> Result<Self::Valid, Contradiction>;
}

/// The settings `args` stand for, or the usage error that says why not.
pub fn try_parse_from<F, I, T>(args: I) -> Result<F::Valid, clap::Error>
where
    F: Check,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut command = F::command();
    let matches = command.try_get_matches_from_mut(args)?;
    let flags = F::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    flags
        .check(&Given(&matches))
        .map_err(|c| command.error(ErrorKind::ArgumentConflict, c))
}

/// The settings of this process's command line; on a bad value or a contradiction, a usage
/// error and exit code 2 (`--help` and `--version` print and exit 0).
pub fn parse<F: Check>() -> F::Valid {
    try_parse_from::<F, _, _>(std::env::args_os()).unwrap_or_else(|e| e.exit())
}
