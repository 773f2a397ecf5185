//! Bundles that are well-formed files but not models this build can serve: each is refused with
//! its reason when loaded, never half-loaded, and never panics the loader.

use census_stream::bundle::{BundleError, BundleFiles, MAX_VERSION};
use census_stream::model::ModelError;

use crate::helpers::{initialized, scoring};

fn v1() -> Option<BundleFiles> {
    let init = initialized()?;
    Some(init.store.read_files(init.version).unwrap())
}

/// `files` with its model text changed by `edit`, restamped so that its sha256s match: only
/// the content is wrong.
fn with_model(files: &BundleFiles, edit: impl Fn(&str) -> String) -> BundleFiles {
    let text = std::str::from_utf8(&files.model_text).unwrap();
    let mut bad = files.clone();
    bad.model_text = edit(text).into_bytes();
    bad.stamp(files.manifest.version);
    bad
}

fn model_error(files: &BundleFiles) -> ModelError {
    match files.load(scoring()) {
        Err(BundleError::Model { source, .. }) => source,
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("loaded"),
    }
}

/// The model text without any tree.
fn without_trees(text: &str) -> String {
    let start = text.find("Tree=0").expect("a first tree");
    let end = text.find("end of trees").expect("the end of the trees");
    let mut out = String::new();
    for line in text[..start].lines() {
        if !line.starts_with("tree_sizes=") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&text[end..]);
    out
}

#[test]
fn each_bad_bundle_kind_is_refused_with_its_reason() {
    let Some(files) = v1() else {
        return;
    };
    assert!(files.load(scoring()).is_ok(), "the good bundle loads");

    let nul = with_model(&files, |t| t.replacen("\n", "\n\0", 3));
    assert!(
        matches!(model_error(&nul), ModelError::NulByte(_)),
        "a NUL byte"
    );

    let no_trees = with_model(&files, without_trees);
    match model_error(&no_trees) {
        ModelError::NoTrees => {}
        e => panic!("zero trees refused for another reason: {e}"),
    }

    // LightGBM reads this as a three-class model, whose probabilities would not line up with
    // the rows.
    let multiclass = with_model(&files, |t| {
        t.replace("num_class=1\n", "num_class=3\n")
            .replace("num_tree_per_iteration=1\n", "num_tree_per_iteration=3\n")
            .replace("objective=binary", "objective=multiclass num_class:3")
    });
    match model_error(&multiclass) {
        ModelError::Classes(3) => {}
        e => panic!("a multiclass model refused for another reason: {e}"),
    }

    for version in [0, MAX_VERSION + 1, u32::MAX] {
        let mut out_of_range = files.clone();
        out_of_range.stamp(version);
        match out_of_range.load(scoring()) {
            Err(BundleError::Manifest { reason, .. }) => {
                assert!(reason.contains("outside"), "{reason}")
            }
            other => panic!("version {version}: {:?}", other.err()),
        }
    }
}
