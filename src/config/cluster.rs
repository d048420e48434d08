//! `[cluster]`: the cluster's name, which a repository belongs to.

use super::nodes::NodeName;
use super::raw::RawCluster;
use super::validate::Errors;

/// `[cluster] name`: required, and a name safe in a path.
pub(super) fn name(raw: RawCluster, errors: &mut Errors) -> String {
    let mut s = errors.section("cluster");
    let cluster = s.required("name", raw.name);
    if !cluster.is_empty() && cluster.parse::<NodeName>().is_err() {
        s.err(
            "name",
            format!("invalid cluster name '{cluster}' (letters, digits, '.', '_', '-')"),
        );
    }
    cluster
}

#[cfg(test)]
mod tests {
    use super::super::test_support::errors_with;

    #[test]
    fn cluster_name_is_a_safe_name() {
        assert_eq!(
            errors_with("[cluster]\nname = \"prod/a\"\n"),
            ["hwdr.d/50-test.toml: [cluster] name: invalid cluster name 'prod/a' (letters, digits, '.', '_', '-')"]
        );
        assert_eq!(
            errors_with("[cluster]\nname = \" \"\n"),
            ["hwdr.d/50-test.toml: [cluster] name: must not be empty"]
        );
    }
}
