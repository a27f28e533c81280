//! The command-line form of list-valued parameters. Each study's parameters
//! derive `clap::Args`, so one declaration (its doc comment, type and
//! default) serves the TOML file, the command line and its `--help`.
//!
//! Architecture specs carry their options after a colon and separate them
//! with commas (`resnet:branch=1,norm=bn`), so a list of them cannot be split
//! at every comma: a piece holding `=` and no `:` continues the options of
//! the spec before it (spec names never contain `=`).

use gradscope_spec::{Arch, ModelArch, TransformerArch};

/// `plain-bn,resnet:branch=1,norm=bn` as a list of MLP architectures.
pub fn arch_list(s: &str) -> Result<Vec<Arch>, String> {
    split_specs(s)?
        .iter()
        .map(|i| i.parse::<Arch>().map_err(|e| e.to_string()))
        .collect()
}

/// Like [`arch_list`], for MLP and conv architectures.
pub fn model_arch_list(s: &str) -> Result<Vec<ModelArch>, String> {
    split_specs(s)?
        .iter()
        .map(|i| i.parse::<ModelArch>().map_err(|e| e.to_string()))
        .collect()
}

/// Like [`model_arch_list`], where no architecture at all is a choice
/// (`""` or `none`: that part of the study is not run).
pub fn model_arch_list_or_none(s: &str) -> Result<Vec<ModelArch>, String> {
    match s.trim() {
        "" | "none" => Ok(Vec::new()),
        _ => model_arch_list(s),
    }
}

/// Like [`arch_list`], for transformer architectures (`transformer:ln=pre`).
pub fn transformer_arch_list(s: &str) -> Result<Vec<TransformerArch>, String> {
    split_specs(s)?
        .iter()
        .map(|i| i.parse::<TransformerArch>().map_err(|e| e.to_string()))
        .collect()
}

/// Split a comma-separated list of specs, keeping `key=value` options with their spec.
fn split_specs(s: &str) -> Result<Vec<String>, String> {
    let mut items: Vec<String> = Vec::new();
    for piece in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match items.last_mut() {
            Some(last) if piece.contains('=') && !piece.contains(':') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => items.push(piece.to_string()),
        }
    }
    if items.is_empty() {
        return Err("list at least one architecture".into());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_lists_split_between_archs_not_options() {
        let l = arch_list("plain-bn,resnet:branch=3,norm=bn,resnet-bn:alpha=0.5,plain").unwrap();
        let s: Vec<String> = l.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            s,
            [
                "plain-bn",
                "resnet-bn:branch=3",
                "resnet-bn:alpha=0.5",
                "plain"
            ]
        );
        assert!(arch_list("").is_err());
        assert!(arch_list("plain,mlp").unwrap_err().contains("mlp"));
        let m = model_arch_list("conv-resnet,resnet-bn").unwrap();
        assert_eq!(m.len(), 2);
        assert!(model_arch_list("").is_err());
        assert_eq!(model_arch_list_or_none(" none ").unwrap(), []);
        assert_eq!(model_arch_list_or_none("").unwrap(), []);
        assert_eq!(model_arch_list_or_none("conv-plain").unwrap().len(), 1);
        assert!(model_arch_list_or_none("conv-mlp").is_err());
    }
}
