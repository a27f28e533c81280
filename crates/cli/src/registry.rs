//! The one table of studies. Each entry names a study's parameters type
//! (whose `clap::Args` derive in the data contract declares every flag once,
//! and whose `Default` is the shown default), its report builder and its
//! terminal summary; from the table come the study subcommands,
//! `gradscope run FILE`, `merge`, `report`, `reproduce --studies` and the
//! lists of studies the tests check. Adding a study: its studies, contract
//! and report modules, and one line in [`STUDIES`].
//!
//! A study command starts from the parameters' defaults (or `quick()`),
//! and only the flags given on the command line replace their keys, through
//! the same TOML table a study file fills, so the command line and a file
//! with the same settings give the same parameters.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, CommandFactory, FromArgMatches};
use gradscope_report::Builder;
use gradscope_studies::registry::{params_from_table, parse_study_file as split_study_file};
use gradscope_studies::{Params, Study};
use gradscope_train::TrainParams;

use crate::args::{Cli, MergeArgs, RunArgs, StudyFlags};
use crate::recipe::RecipeFlags;
use crate::run::{Ctx, merge_params, run_params};
use crate::summary;

/// Every study, in the order of the command list, `reproduce` and the report index.
pub static STUDIES: &[&dyn StudyEntry] = &[
    &SHATTERED,
    &NORMS,
    &SKIPS,
    &DEGRADATION,
    &TRAINABILITY,
    &ENSEMBLE,
    &CORRELATION,
    &LANDSCAPE,
    &CURVATURE,
    &TRANSFORMERS,
];

static SHATTERED: Entry<gradscope_studies::shattered::ShatteredParams> = Entry {
    about: "Shattered gradients: correlation and spectra of df/dx over an input grid (Balduzzi et al. 2017)",
    aliases: &[],
    report: gradscope_report::shattered::build,
    summary: summary::shattered,
    training: None,
    params: PhantomData,
};

static NORMS: Entry<gradscope_studies::norms::NormsParams> = Entry {
    about: "Gradient norms through depth: per-layer norms against mean-field theory, the scalar chain, the σ_w² × depth phase diagram, Jacobian spectra",
    aliases: &[],
    report: gradscope_report::norms::build,
    summary: summary::norms,
    training: None,
    params: PhantomData,
};

static SKIPS: Entry<gradscope_studies::skips::SkipsParams> = Entry {
    about: "Skip connections and normalisers compared (r₁, spectra, per-layer norms), and a λ sweep of xSkip, xSkip+LN and rSkip+LN",
    aliases: &[],
    report: gradscope_report::skips::build,
    summary: summary::skips,
    training: None,
    params: PhantomData,
};

static DEGRADATION: Entry<gradscope_studies::training::TrainingParams> = Entry {
    about: "The degradation problem: plain vs residual nets trained at several depths (He et al. 2016a)",
    // Its folder was `training` before the study took its command's name.
    aliases: &["training"],
    report: gradscope_report::training::build,
    summary: summary::degradation,
    training: Some(|p| (&mut p.train, &mut p.checkpoints)),
    params: PhantomData,
};

static TRAINABILITY: Entry<gradscope_studies::trainability::TrainabilityParams> = Entry {
    about: "Which variants actually train: every shortcut, normaliser and init trained through depth over a learning-rate grid, with the gradient statistics of training",
    aliases: &[],
    report: gradscope_report::trainability::build,
    summary: summary::trainability,
    training: Some(|p| (&mut p.train, &mut p.checkpoints)),
    params: PhantomData,
};

static ENSEMBLE: Entry<gradscope_studies::ensemble::EnsembleParams> = Entry {
    about: "Residual nets as ensembles: lesions (delete or swap blocks) and gradient by path length (Veit et al. 2016)",
    aliases: &[],
    report: gradscope_report::ensemble::build,
    summary: summary::ensemble,
    training: Some(|p| (&mut p.train, &mut p.checkpoints)),
    params: PhantomData,
};

static CORRELATION: Entry<gradscope_studies::correlation::CorrelationParams> = Entry {
    about: "Gradient correlation beyond one dimension: 2-D gradient pictures and per-example gradient similarity on the digits",
    aliases: &[],
    report: gradscope_report::correlation::build,
    summary: summary::correlation,
    training: None,
    params: PhantomData,
};

static LANDSCAPE: Entry<gradscope_studies::landscape::LandscapeParams> = Entry {
    about: "The loss landscape: curves, surfaces and |λ_min/λ_max| along filter-normalised directions (Li et al. 2018), and smoothness along the gradient during training (Santurkar et al. 2018)",
    aliases: &[],
    report: gradscope_report::landscape::build,
    summary: summary::landscape,
    training: None,
    params: PhantomData,
};

static CURVATURE: Entry<gradscope_studies::curvature::CurvatureParams> = Entry {
    about: "Curvature of the loss: the Hessian's top eigenvalue, trace, negative mass and spectral density against depth, plain vs residual, with and without BN",
    aliases: &[],
    report: gradscope_report::curvature::build,
    summary: summary::curvature,
    training: Some(|p| (&mut p.train, &mut p.checkpoints)),
    params: PhantomData,
};

static TRANSFORMERS: Entry<gradscope_studies::transformers::TransformersParams> = Entry {
    about: "Transformers at initialisation: the output layer's gradient against depth for post-LN, pre-LN, no LN and ReZero (Xiong et al. 2020), and rank collapse with and without skips and MLPs (Dong et al. 2021)",
    aliases: &[],
    report: gradscope_report::transformers::build,
    summary: summary::transformers,
    training: None,
    params: PhantomData,
};

/// What the command line knows of one study.
pub trait StudyEntry: Sync {
    /// The study's name: its command, folder, `study = "…"` and `merge` argument.
    fn name(&self) -> &'static str;
    /// Older names still accepted for the study.
    fn aliases(&self) -> &'static [&'static str];
    /// The study's subcommand: one flag per parameter, its default shown.
    fn command(&self) -> Command;
    /// The parameters as a study file's table: the defaults, or `quick()`.
    fn params_table(&self, quick: bool) -> toml::Table;
    /// Parse and validate a study file's parameters table (`file` names it in errors).
    fn check_table(&self, table: toml::Table, file: &Path) -> gradscope_studies::Result<()>;
    /// The study's report builder.
    fn report(&self) -> Builder;
    /// A short table of the main numbers of a finished study folder.
    fn summary_table(&self, dir: &Path) -> Result<String>;
    /// The parameters a parsed subcommand asks for, as a study file's
    /// table: the defaults (or `quick()`) with the flags given applied.
    fn params_from_command_line(&self, m: &ArgMatches) -> Result<toml::Table>;
    /// Run the study from its parsed subcommand.
    fn run_command_line(&self, ctx: &Ctx, m: &ArgMatches) -> Result<()>;
    /// Run the study from a study file's parameters table.
    fn run_file(&self, ctx: &Ctx, table: toml::Table, a: &RunArgs) -> Result<()>;
    /// Validate the default (or quick) parameters, as `reproduce` does before running any.
    fn check_defaults(&self, quick: bool) -> Result<()>;
    /// Run the default (or quick) parameters.
    fn run_defaults(
        &self,
        ctx: &Ctx,
        quick: bool,
        folders: &crate::args::Folders,
        flags: &crate::args::RunFlags,
    ) -> Result<()>;
    /// Summarise the cells stored by shards.
    fn merge(&self, ctx: &Ctx, a: &MergeArgs) -> Result<()>;
}

/// The recipe and checkpoint folder of a study that trains nets.
type TrainingFields<P> = for<'a> fn(&'a mut P) -> (&'a mut TrainParams, &'a mut Option<PathBuf>);

/// A registry entry: a study by its parameters type.
struct Entry<P> {
    about: &'static str,
    aliases: &'static [&'static str],
    report: Builder,
    summary: fn(&Path) -> Result<String>,
    /// For studies that train: the recipe flags apply here.
    training: Option<TrainingFields<P>>,
    params: PhantomData<fn() -> P>,
}

impl<P: Params + Args + FromArgMatches> Entry<P> {
    fn base(quick: bool) -> P {
        if quick { P::quick() } else { P::default() }
    }

    /// Run validated parameters and print the summary table.
    fn run(&self, ctx: &Ctx, p: &P, flags: &StudyFlags) -> Result<()> {
        let done = run_params(ctx, p, &flags.folders, &flags.run, !flags.no_report)?;
        if done {
            self.print_summary(ctx, &flags.folders.out)?;
        }
        Ok(())
    }

    /// The parameters of a parsed subcommand.
    fn params_given(&self, m: &ArgMatches) -> Result<P> {
        let flags = StudyFlags::from_arg_matches(m)?;
        let mut p: P = given_flags(&Self::base(flags.quick), m)?;
        if let Some(fields) = self.training {
            let (recipe, checkpoints) = fields(&mut p);
            RecipeFlags::given(m)?.apply(recipe)?;
            checkpoints.get_or_insert_with(|| default_checkpoints(&flags.folders.out));
        }
        let given = |id: &str| {
            m.try_contains_id(id).unwrap_or(false)
                && m.value_source(id) == Some(ValueSource::CommandLine)
        };
        let took = p.infer_from_weights(&given)?;
        if !took.is_empty() && !m.get_flag("quiet") {
            eprintln!(
                "{}: from the weights file's spec: {}",
                self.name(),
                took.iter()
                    .map(|t| format!("--{}", t.replace('_', "-")))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        Ok(p)
    }

    fn print_summary(&self, ctx: &Ctx, out: &Path) -> Result<()> {
        if !ctx.quiet {
            print!("{}", (self.summary)(&out.join(self.name()))?);
        }
        Ok(())
    }
}

impl<P: Params + Args + FromArgMatches> StudyEntry for Entry<P> {
    fn name(&self) -> &'static str {
        <P::Config as Study>::NAME
    }

    fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }

    fn command(&self) -> Command {
        let mut cmd = show_defaults(P::augment_args(Command::new(self.name())), &P::default());
        if let Some(fields) = self.training {
            let mut p = P::default();
            let recipe = fields(&mut p).0.clone();
            cmd = RecipeFlags::show_defaults(RecipeFlags::augment_args(cmd), &recipe);
        }
        StudyFlags::augment_args(cmd)
            .about(self.about)
            .long_about(None)
            .aliases(self.aliases)
            .allow_negative_numbers(true)
    }

    fn params_table(&self, quick: bool) -> toml::Table {
        toml::Table::try_from(Self::base(quick)).expect("parameters are a TOML table")
    }

    fn check_table(&self, table: toml::Table, file: &Path) -> gradscope_studies::Result<()> {
        params_from_table::<P>(table, file)?.check().map(|_| ())
    }

    fn report(&self) -> Builder {
        self.report
    }

    fn summary_table(&self, dir: &Path) -> Result<String> {
        (self.summary)(dir)
    }

    fn params_from_command_line(&self, m: &ArgMatches) -> Result<toml::Table> {
        Ok(toml::Table::try_from(self.params_given(m)?)?)
    }

    fn run_command_line(&self, ctx: &Ctx, m: &ArgMatches) -> Result<()> {
        let flags = StudyFlags::from_arg_matches(m)?;
        self.run(ctx, &self.params_given(m)?, &flags)
    }

    fn run_file(&self, ctx: &Ctx, table: toml::Table, a: &RunArgs) -> Result<()> {
        let mut p: P = params_from_table(table.clone(), &a.file)?;
        if a.quick {
            // Keys the file gives win over the small defaults.
            let mut merged = self.params_table(true);
            merged.extend(table);
            p = params_from_table(merged, &a.file)?;
        }
        let flags = StudyFlags {
            quick: a.quick,
            no_report: a.no_report,
            run: a.run.clone(),
            folders: a.folders.clone(),
        };
        self.run(ctx, &p, &flags)
    }

    fn check_defaults(&self, quick: bool) -> Result<()> {
        Self::base(quick).check()?;
        Ok(())
    }

    fn run_defaults(
        &self,
        ctx: &Ctx,
        quick: bool,
        folders: &crate::args::Folders,
        flags: &crate::args::RunFlags,
    ) -> Result<()> {
        run_params(ctx, &Self::base(quick), folders, flags, false)?;
        Ok(())
    }

    fn merge(&self, ctx: &Ctx, a: &MergeArgs) -> Result<()> {
        merge_params::<P>(ctx, &a.folders, a.config.as_deref(), !a.no_report)?;
        self.print_summary(ctx, &a.folders.out)
    }
}

/// Where the studies that train keep their checkpoints unless told: one
/// folder, so the ensemble study reuses nets the degradation study trained.
pub fn default_checkpoints(out: &Path) -> PathBuf {
    out.join(gradscope_studies::training::NAME)
        .join("checkpoints")
}

/// The study named `name` (or one of its older names).
pub fn find(name: &str) -> Option<&'static dyn StudyEntry> {
    let name = name.trim();
    STUDIES
        .iter()
        .copied()
        .find(|e| e.name() == name || e.aliases().contains(&name))
}

/// The studies' names, for messages.
pub fn names() -> Vec<&'static str> {
    STUDIES.iter().map(|e| e.name()).collect()
}

/// A study file split into its study and its parameters table; an unknown
/// study is a one-line error listing the known ones.
pub fn parse_study_file(
    text: &str,
    path: &Path,
) -> gradscope_studies::Result<(&'static dyn StudyEntry, toml::Table)> {
    let mut known = names();
    known.extend(STUDIES.iter().flat_map(|e| e.aliases().iter().copied()));
    let (name, table) = split_study_file(text, path, &known)?;
    let entry = find(&name).expect("parse_study_file accepts known names only");
    Ok((entry, table))
}

/// The whole command line: the commands of [`Cli`] and one per study,
/// studies first; a bare `gradscope` prints the help.
pub fn command() -> Command {
    let mut cmd = Cli::command().arg_required_else_help(true);
    let others: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for (i, name) in others.iter().enumerate() {
        cmd = cmd.mut_subcommand(name, |c| c.display_order(STUDIES.len() + i));
    }
    for (i, e) in STUDIES.iter().enumerate() {
        cmd = cmd.subcommand(e.command().display_order(i));
    }
    // The lists of studies in the other commands' help are the registry's.
    let list = names().join(", ");
    cmd.mut_subcommand("train", train_flags)
        .mut_subcommand("reproduce", |c| {
            c.mut_arg("studies", |a| {
                a.help(format!(
                    "Only these studies, comma-separated (default: all of {list}); \
                     reports are built from whatever data the folder holds"
                ))
            })
        })
        .mut_subcommand("merge", |c| {
            c.mut_arg("study", |a| {
                a.help(format!("The study (its folder under --out): one of {list}"))
            })
        })
}

/// `gradscope train` takes the degradation study's flags for one net:
/// `--arch` and `--depth` instead of the lists, one seed.
fn train_flags(cmd: Command) -> Command {
    use gradscope_studies::training::TrainingParams;
    let defaults = crate::run::train_defaults();
    // augment_args would put the parameters' doc in place of the command's.
    let about = cmd.get_about().cloned().unwrap_or_default();
    let mut cmd = show_defaults(TrainingParams::augment_args(cmd), &defaults)
        .about(about)
        .long_about(None);
    cmd = RecipeFlags::show_defaults(cmd, &defaults.train);
    for id in ["archs", "depths", "seeds"] {
        cmd = cmd.mut_arg(id, |a| a.hide(true).conflicts_with("arch"));
    }
    cmd.allow_negative_numbers(true)
}

/// Show every parameter's default (from the parameters' own `Default`, as
/// a study file would write it) in `--help`; a list is written with its
/// flag's delimiter.
pub fn show_defaults<P: serde::Serialize>(mut cmd: Command, defaults: &P) -> Command {
    let table = toml::Table::try_from(defaults).expect("parameters are a TOML table");
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        let Some(value) = table.get(&id) else {
            continue;
        };
        // With a default, no parameter flag is required.
        cmd = cmd.mut_arg(&id, |a| {
            let text = match value {
                toml::Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(flag_text).collect();
                    // A list flag splits at its delimiter; the arch lists take one value.
                    items.join(&a.get_value_delimiter().unwrap_or(',').to_string())
                }
                scalar => flag_text(scalar),
            };
            a.default_value(text).required(false)
        });
    }
    cmd
}

/// A TOML value as a flag takes it: strings bare, floats in Rust's
/// shortest round-trip form.
fn flag_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => f.to_string(),
        other => other.to_string(),
    }
}

/// `base` with the keys of the flags given on the command line replaced.
/// clap parses each flag into its typed field; the keys of the flags not
/// given (their shown defaults) are left to `base`.
pub fn given_flags<P: Params + FromArgMatches>(base: &P, m: &ArgMatches) -> Result<P> {
    let parsed = toml::Table::try_from(P::from_arg_matches(m)?).context("parameters")?;
    let mut table = toml::Table::try_from(base).context("parameters")?;
    for id in m.ids() {
        let id = id.as_str();
        if m.value_source(id) == Some(ValueSource::CommandLine)
            && let Some(v) = parsed.get(id)
        {
            table.insert(id.to_string(), v.clone());
        }
    }
    Ok(params_from_table(table, Path::new("command line"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A study's command line with every shown default typed out.
    fn defaults_typed(e: &dyn StudyEntry) -> Vec<String> {
        let mut line = vec!["gradscope".to_string(), e.name().to_string()];
        for a in e.command().get_arguments() {
            let (Some(long), d) = (a.get_long(), a.get_default_values()) else {
                continue;
            };
            if d.is_empty() || matches!(long, "out" | "reports") {
                continue;
            }
            let v: Vec<String> = d.iter().map(|v| v.to_string_lossy().into_owned()).collect();
            line.push(format!("--{long}={}", v.join(",")));
        }
        line
    }

    #[test]
    fn every_shown_default_parses_back_to_the_parameters_default() {
        for e in STUDIES {
            let mut line = defaults_typed(*e);
            line.push("--quick".into());
            let m = command().try_get_matches_from(&line).unwrap();
            let (name, sub) = m.subcommand().unwrap();
            assert_eq!(name, e.name());
            let mut got = e.params_from_command_line(sub).unwrap();
            let mut want = e.params_table(false);
            // Set by the command line when not given.
            got.remove("checkpoints");
            want.remove("checkpoints");
            // The recipe's probes have no flag (a study file sets them).
            for t in [&mut got, &mut want] {
                if let Some(toml::Value::Table(train)) = t.get_mut("train") {
                    train.remove("probe_points");
                    train.remove("similarity_examples");
                }
            }
            assert_eq!(got, want, "{}: {line:?}", e.name());
        }
    }

    #[test]
    fn only_the_flags_given_replace_the_base_parameters() {
        let m = command()
            .try_get_matches_from(["gradscope", "shattered", "--quick", "--width", "7"])
            .unwrap();
        let t = SHATTERED
            .params_from_command_line(m.subcommand().unwrap().1)
            .unwrap();
        let mut want = SHATTERED.params_table(true);
        want.insert("width".into(), toml::Value::Integer(7));
        assert_eq!(t, want);
        // Negative numbers reach validation as values.
        let m = command()
            .try_get_matches_from(["gradscope", "degradation", "--lr", "-1"])
            .unwrap();
        let t = DEGRADATION
            .params_from_command_line(m.subcommand().unwrap().1)
            .unwrap();
        assert_eq!(t["train"]["optimizer"]["lr"].as_float(), Some(-1.0));
    }

    #[test]
    fn names_and_aliases_find_one_study_each() {
        let mut all = names();
        all.extend(STUDIES.iter().flat_map(|e| e.aliases().iter().copied()));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a name used twice");
        assert_eq!(find("training").unwrap().name(), "degradation");
        assert!(find("nope").is_none());
    }
}
