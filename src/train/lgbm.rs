//! A small safe layer over LightGBM's C API for training. lightgbm3's `Dataset` cannot declare
//! categorical features (it builds datasets with empty parameters, and LightGBM fixes
//! `categorical_feature` when a dataset is built), and its training loop offers no per-round
//! control, which cross-validation needs to stop on the mean of the folds. Scoring uses
//! lightgbm3's `Booster` on the saved model text (see `crate::model`).

use std::ffi::{c_void, CStr, CString};

use lightgbm3_sys as sys;

use crate::features::{categorical_indices, feature_names, N_FEATURES};

/// An error reported by LightGBM.
#[derive(Debug, thiserror::Error)]
#[error("LightGBM: {0}")]
pub struct LgbmError(pub String);

fn check(ret: i32) -> Result<(), LgbmError> {
    if ret == 0 {
        return Ok(());
    }
    // SAFETY: LGBM_GetLastError returns a pointer to a thread-local, NUL-terminated buffer.
    let msg = unsafe { CStr::from_ptr(sys::LGBM_GetLastError()) };
    Err(LgbmError(msg.to_string_lossy().into_owned()))
}

/// Dataset parameters: the categorical declaration must be given when the dataset is built.
fn dataset_params() -> CString {
    let cats: Vec<String> = categorical_indices()
        .iter()
        .map(|i| i.to_string())
        .collect();
    // LightGBM drops, when it builds a dataset, the bins no leaf of `min_data_in_leaf` rows
    // could use; with `feature_pre_filter=false` it keeps them, so that a booster may use the
    // smaller minimum the parameters set.
    CString::new(format!(
        "categorical_feature={} min_data_in_leaf={} feature_pre_filter=false verbosity=-1",
        cats.join(","),
        super::space::MIN_DATA_IN_LEAF
    ))
    .expect("no NUL in parameters")
}

/// A LightGBM dataset built from row-major features with the project's feature schema.
pub struct TrainSet {
    handle: sys::DatasetHandle,
}

impl TrainSet {
    /// Builds a dataset; a validation set passes its training set as `reference` so that both
    /// share bin boundaries.
    pub fn new(
        features: &[f64],
        labels: &[f32],
        reference: Option<&TrainSet>,
    ) -> Result<Self, LgbmError> {
        let n_rows = labels.len();
        if n_rows == 0 || features.len() != n_rows * N_FEATURES {
            return Err(LgbmError(format!(
                "{} feature values for {n_rows} labels and {N_FEATURES} features",
                features.len()
            )));
        }
        let params = dataset_params();
        let mut handle: sys::DatasetHandle = std::ptr::null_mut();
        // SAFETY: `features` holds n_rows * N_FEATURES f64 values, row-major, as declared; the
        // reference handle, when given, is a live dataset owned by `reference`.
        check(unsafe {
            sys::LGBM_DatasetCreateFromMat(
                features.as_ptr() as *const c_void,
                sys::C_API_DTYPE_FLOAT64 as i32,
                n_rows as i32,
                N_FEATURES as i32,
                1,
                params.as_ptr(),
                reference.map_or(std::ptr::null_mut(), |r| r.handle),
                &mut handle,
            )
        })?;
        let set = TrainSet { handle };
        let field = CString::new("label").expect("no NUL");
        // SAFETY: `labels` holds n_rows f32 values; LightGBM copies them.
        check(unsafe {
            sys::LGBM_DatasetSetField(
                set.handle,
                field.as_ptr(),
                labels.as_ptr() as *const c_void,
                n_rows as i32,
                sys::C_API_DTYPE_FLOAT32 as i32,
            )
        })?;
        let names: Vec<CString> = feature_names()
            .into_iter()
            .map(|n| CString::new(n).expect("no NUL in feature names"))
            .collect();
        let mut ptrs: Vec<*const std::os::raw::c_char> = names.iter().map(|n| n.as_ptr()).collect();
        // SAFETY: `ptrs` holds N_FEATURES pointers to live NUL-terminated strings.
        check(unsafe {
            sys::LGBM_DatasetSetFeatureNames(set.handle, ptrs.as_mut_ptr(), ptrs.len() as i32)
        })?;
        Ok(set)
    }
}

// SAFETY: a LightGBM dataset is a heap object behind a handle that any thread may use; the
// search hands each set to one evaluation at a time (its pool), and boosters only read it.
unsafe impl Send for TrainSet {}

impl Drop for TrainSet {
    fn drop(&mut self) {
        // SAFETY: the handle was created by LGBM_DatasetCreateFromMat and is freed once.
        unsafe { sys::LGBM_DatasetFree(self.handle) };
    }
}

/// A booster being trained, one round at a time, on datasets it borrows: LightGBM keeps
/// pointers to them, so they must outlive it, and one set of datasets serves evaluation after
/// evaluation (building them is a tenth of a search's work).
pub struct Trainer<'a> {
    handle: sys::BoosterHandle,
    _sets: std::marker::PhantomData<&'a TrainSet>,
}

// SAFETY: a booster is a heap object behind a handle that any thread may use; `&mut self`
// methods give one thread at a time (cross-validation moves each fold's trainer to a worker).
unsafe impl Send for Trainer<'_> {}

impl<'a> Trainer<'a> {
    /// Creates a booster on `train` with LightGBM parameters `params` ("key=value ...").
    pub fn new(
        train: &'a TrainSet,
        valid: Option<&'a TrainSet>,
        params: &str,
    ) -> Result<Self, LgbmError> {
        let params = CString::new(params).map_err(|e| LgbmError(e.to_string()))?;
        let mut handle: sys::BoosterHandle = std::ptr::null_mut();
        // SAFETY: `train` is a live dataset; `params` is NUL-terminated.
        check(unsafe { sys::LGBM_BoosterCreate(train.handle, params.as_ptr(), &mut handle) })?;
        let trainer = Trainer {
            handle,
            _sets: std::marker::PhantomData,
        };
        if let Some(valid) = valid {
            // SAFETY: both handles are live; `valid` outlives the booster ('a).
            check(unsafe { sys::LGBM_BoosterAddValidData(trainer.handle, valid.handle) })?;
        }
        Ok(trainer)
    }

    /// Trains one more round. Returns `true` when LightGBM can split no further.
    pub fn update(&mut self) -> Result<bool, LgbmError> {
        let mut finished = 0;
        // SAFETY: live booster handle.
        check(unsafe { sys::LGBM_BoosterUpdateOneIter(self.handle, &mut finished) })?;
        Ok(finished != 0)
    }

    /// The first metric on the validation set after the last round.
    pub fn valid_metric(&self) -> Result<f64, LgbmError> {
        let mut out = [0.0f64; 8];
        let mut len = 0;
        // SAFETY: one metric is configured, so at most a few values are written into `out`.
        check(unsafe { sys::LGBM_BoosterGetEval(self.handle, 1, &mut len, out.as_mut_ptr()) })?;
        if len < 1 {
            return Err(LgbmError("no validation metric configured".into()));
        }
        Ok(out[0])
    }

    /// The model of the first `rounds` rounds in LightGBM's text format.
    pub fn model_text(&self, rounds: usize) -> Result<String, LgbmError> {
        let mut len: i64 = 0;
        let mut buf: Vec<u8> = vec![0; 1 << 20];
        loop {
            // SAFETY: `buf` has `buf.len()` writable bytes; LightGBM writes at most that many
            // and reports the size it needs in `len`.
            check(unsafe {
                sys::LGBM_BoosterSaveModelToString(
                    self.handle,
                    0,
                    rounds as i32,
                    0,
                    buf.len() as i64,
                    &mut len,
                    buf.as_mut_ptr() as *mut std::os::raw::c_char,
                )
            })?;
            if (len as usize) <= buf.len() {
                break;
            }
            buf.resize(len as usize, 0);
        }
        buf.truncate((len as usize).saturating_sub(1)); // drop the trailing NUL
        String::from_utf8(buf).map_err(|e| LgbmError(e.to_string()))
    }
}

impl Drop for Trainer<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle was created by LGBM_BoosterCreate and is freed once, before the
        // datasets it points to (borrowed for 'a).
        unsafe { sys::LGBM_BoosterFree(self.handle) };
    }
}
