//! Flags shared by several binaries.

use std::path::PathBuf;

use clap::Args;

use crate::bundle::BundleStore;

/// Where bundles are stored.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Folder of model files, manifests and CURRENT.
    #[arg(long, env = "CENSUS_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Folder of feature processor files.
    #[arg(long, env = "CENSUS_PROCESSORS_DIR", default_value = "dataprocessors")]
    pub processors_dir: PathBuf,
}

impl StoreArgs {
    pub fn store(&self) -> BundleStore {
        BundleStore::new(&self.models_dir, &self.processors_dir)
    }
}

/// The machine's core count, the default number of worker threads.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
