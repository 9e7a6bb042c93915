//! Restore and listing selections by item id.

/// Whether item `item` is `id` or lies below it.
pub(crate) fn is_at_or_below(item: &str, id: &str) -> bool {
    if item == id || id == "/" {
        return true;
    }
    let base = id.strip_suffix('/').unwrap_or(id);
    item.strip_prefix(base)
        .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::is_at_or_below;

    #[test]
    fn selection_matches_whole_components() {
        assert!(is_at_or_below("/srv/a", "/srv/a"));
        assert!(is_at_or_below("/srv/a/b", "/srv/a"));
        assert!(is_at_or_below("/srv/a/b", "/srv/a/"));
        assert!(!is_at_or_below("/srv/ab", "/srv/a"));
        assert!(is_at_or_below("/srv/ab", "/"));
    }
}
