//! Bundles on disk: `models/model_vNNNN.txt`, `models/manifest_vNNNN.json`,
//! `dataprocessors/dataprocessor_vNNNN.bin` and `models/CURRENT`. Files are created atomically
//! and never overwritten; the manifest is written last, so a version without one is incomplete
//! and is never loaded.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{
    manifest_file, model_file, processor_file, Bundle, BundleError, BundleFiles, Manifest,
};
use crate::model::Scoring;
use crate::util::atomic_file::{create_atomic, write_atomic};

const CURRENT: &str = "CURRENT";

/// The two folders bundles live in.
#[derive(Debug, Clone)]
pub struct BundleStore {
    models: PathBuf,
    processors: PathBuf,
}

fn io_err(file: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        file: file.to_path_buf(),
        source,
    }
}

/// The version in a file name such as `model_v0003.txt`.
fn version_of(name: &str) -> Option<u32> {
    let stem = name.split('.').next()?;
    let (_, digits) = stem.rsplit_once("_v")?;
    // A number out of range is not a version this store wrote: ignored, never numbered above.
    digits
        .parse()
        .ok()
        .filter(|v| (1..=super::MAX_VERSION).contains(v))
}

impl BundleStore {
    pub fn new(models: impl Into<PathBuf>, processors: impl Into<PathBuf>) -> Self {
        BundleStore {
            models: models.into(),
            processors: processors.into(),
        }
    }

    pub fn models_dir(&self) -> &Path {
        &self.models
    }

    pub fn processors_dir(&self) -> &Path {
        &self.processors
    }

    fn names_in(dir: &Path) -> Result<Vec<String>, BundleError> {
        match fs::read_dir(dir) {
            Ok(entries) => Ok(entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(dir)(e)),
        }
    }

    /// Complete versions (those with a manifest), ascending.
    pub fn versions(&self) -> Result<Vec<u32>, BundleError> {
        let mut v: Vec<u32> = Self::names_in(&self.models)?
            .iter()
            .filter(|n| n.starts_with("manifest_v") && n.ends_with(".json"))
            .filter_map(|n| version_of(n))
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The highest version any file uses, complete or not: a new version goes above it.
    pub fn highest_used(&self) -> Result<u32, BundleError> {
        let models = Self::names_in(&self.models)?;
        let procs = Self::names_in(&self.processors)?;
        Ok(models
            .iter()
            .chain(procs.iter())
            .filter(|n| n.contains("_v"))
            .filter_map(|n| version_of(n))
            .max()
            .unwrap_or(0))
    }

    /// The promoted version named by `models/CURRENT`, if any.
    pub fn current(&self) -> Result<Option<u32>, BundleError> {
        let path = self.models.join(CURRENT);
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| BundleError::Manifest {
                    file: path.display().to_string(),
                    reason: format!("`{}` is not a version number", text.trim()),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Reads a version's files (unverified: [`BundleFiles::load`] verifies).
    pub fn read_files(&self, version: u32) -> Result<BundleFiles, BundleError> {
        let manifest_path = self.models.join(manifest_file(version));
        let text = fs::read(&manifest_path).map_err(io_err(&manifest_path))?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| BundleError::Manifest {
                file: manifest_path.display().to_string(),
                reason: e.to_string(),
            })?;
        if manifest.version != version
            || manifest.model_file != model_file(version)
            || manifest.processor_file != processor_file(version)
        {
            return Err(BundleError::Manifest {
                file: manifest_path.display().to_string(),
                reason: format!("it describes version {}, not {version}", manifest.version),
            });
        }
        let model_path = self.models.join(&manifest.model_file);
        let proc_path = self.processors.join(&manifest.processor_file);
        Ok(BundleFiles {
            model_text: fs::read(&model_path).map_err(io_err(&model_path))?,
            processor: fs::read(&proc_path).map_err(io_err(&proc_path))?,
            manifest,
        })
    }

    /// Reads, verifies and loads a version (see [`BundleFiles::load`]); errors name the
    /// offending file's path.
    pub fn load(&self, version: u32, scoring: Scoring) -> Result<Bundle, BundleError> {
        let files = self.read_files(version)?;
        let model_path = self.models.join(&files.manifest.model_file);
        let proc_path = self.processors.join(&files.manifest.processor_file);
        files.load_named(
            &model_path.display().to_string(),
            &proc_path.display().to_string(),
            scoring,
        )
    }

    /// The promoted version, an error saying to run `initialize` when there is none.
    pub fn current_version(&self) -> Result<u32, BundleError> {
        self.current()?
            .ok_or_else(|| BundleError::NoCurrent(self.models.clone()))
    }

    /// Loads the promoted version.
    pub fn load_current(&self, scoring: Scoring) -> Result<Bundle, BundleError> {
        self.load(self.current_version()?, scoring)
    }

    /// Stores a new version of `files` above every version in use, filling in its number, file
    /// names and sha256s, and promotes it when `promote` is set. Never overwrites a file.
    pub fn save(&self, mut files: BundleFiles, promote: bool) -> Result<Manifest, BundleError> {
        loop {
            let version = self.highest_used()? + 1;
            files.stamp(version);
            let m = &mut files.manifest;
            m.promoted = promote;
            let proc_path = self.processors.join(&m.processor_file);
            let model_path = self.models.join(&m.model_file);
            let manifest_path = self.models.join(manifest_file(version));
            // Another writer may take the same number between our look and our write: the
            // no-clobber create fails, and we try the next number.
            match create_atomic(&proc_path, &files.processor) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                r => r.map_err(io_err(&proc_path))?,
            }
            match create_atomic(&model_path, &files.model_text) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                r => r.map_err(io_err(&model_path))?,
            }
            let json = serde_json::to_vec_pretty(&files.manifest).expect("manifest serializes");
            match create_atomic(&manifest_path, &json) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                r => r.map_err(io_err(&manifest_path))?,
            }
            if promote {
                self.promote(version)?;
            }
            return Ok(files.manifest);
        }
    }

    /// Stores `files` as the version its manifest names (a bundle from the registry, whose
    /// number is already given). A version already stored with the same files is left as it is;
    /// one with other files is a conflict, never overwritten. A new version is loaded (as
    /// `scoring` says) before it is stored: a bundle that does not load is not stored.
    pub fn put(&self, files: &BundleFiles, scoring: Scoring) -> Result<(), BundleError> {
        let m = &files.manifest;
        let version = m.version;
        let manifest_path = self.models.join(manifest_file(version));
        if manifest_path.exists() {
            let stored = self.read_files(version)?.manifest;
            if stored.model_sha256 != m.model_sha256
                || stored.processor_sha256 != m.processor_sha256
            {
                return Err(BundleError::Conflict {
                    file: manifest_path,
                    version,
                });
            }
            return Ok(());
        }
        files.load(scoring)?;
        for (path, bytes) in [
            (
                self.processors.join(processor_file(version)),
                &files.processor,
            ),
            (self.models.join(model_file(version)), &files.model_text),
        ] {
            match create_atomic(&path, bytes) {
                // Left by an interrupted put or save: the manifest, written last, is not there.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    write_atomic(&path, bytes).map_err(io_err(&path))?
                }
                r => r.map_err(io_err(&path))?,
            }
        }
        let json = serde_json::to_vec_pretty(m).expect("manifest serializes");
        create_atomic(&manifest_path, &json).map_err(io_err(&manifest_path))
    }

    /// Points `models/CURRENT` at `version`.
    pub fn promote(&self, version: u32) -> Result<(), BundleError> {
        let path = self.models.join(CURRENT);
        write_atomic(&path, format!("{version}\n").as_bytes()).map_err(io_err(&path))
    }

    /// Removes `version`'s files: its manifest first, so that a crash part-way leaves no
    /// version that seems complete. The version `models/CURRENT` names is never removed.
    pub fn remove(&self, version: u32) -> Result<(), BundleError> {
        if self.current()? == Some(version) {
            return Err(BundleError::Manifest {
                file: CURRENT.to_owned(),
                reason: format!("v{version} is the current version: it is not removed"),
            });
        }
        for path in [
            self.models.join(manifest_file(version)),
            self.models.join(model_file(version)),
            self.processors.join(processor_file(version)),
        ] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err(&path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::version_of;

    #[test]
    fn versions_are_read_from_file_names() {
        assert_eq!(version_of("model_v0012.txt"), Some(12));
        assert_eq!(version_of("dataprocessor_v0003.bin"), Some(3));
        assert_eq!(version_of("manifest_v10000.json"), Some(10000));
        assert_eq!(version_of("CURRENT"), None);
    }
}
