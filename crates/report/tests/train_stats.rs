//! The degradation and trainability reports map the gradient statistics
//! their runs write (`train_stats.csv`) with the same figures: one panel
//! per run of seed 0, on the committed data.

use std::path::Path;

fn data(study: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../notebooks-data")
        .join(study)
}

#[test]
fn both_training_reports_map_gsnr_update_size_and_distance_from_init() {
    for (study, build) in [
        (
            "degradation",
            gradscope_report::training::build as fn(&Path, &Path) -> _,
        ),
        ("trainability", gradscope_report::trainability::build),
    ] {
        let dir = tempfile::tempdir().unwrap();
        build(&data(study), dir.path()).unwrap();
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(
            md.contains("## Gradient statistics during training"),
            "{study}"
        );
        for name in ["gsnr_heatmaps", "update_size_heatmaps", "distance_heatmaps"] {
            assert!(
                dir.path().join(format!("{name}.png")).exists(),
                "{study}: {name}"
            );
            assert!(md.contains(&format!("({name}.png)")), "{study}: {name}");
        }
    }
}
