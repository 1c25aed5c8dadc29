//! The arithmetic of a Deployment's rollout (Kubernetes' `rolling.go`, `recreate.go` and
//! `sync.go`'s proportional scaling), over ReplicaSet sizes only. Pure.
//!
//! A rolling update moves one step per sync: grow the new ReplicaSet while the total stays
//! within `replicas + maxSurge`, else shrink old ones (unhealthy first) while the available
//! pods stay at least `replicas - maxUnavailable`. Each step waits for the ReplicaSets'
//! status to show the last one before the next.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::intstr::{scaled_value, NotAPercentage};

/// One ReplicaSet as the rollout sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Size {
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// The `max-replicas` annotation: `replicas + maxSurge` of the Deployment when this
    /// ReplicaSet was last sized (for proportional scaling).
    pub max_replicas: Option<i32>,
}

/// `(maxSurge, maxUnavailable)` as pod counts (`ResolveFenceposts`): surge rounds up,
/// unavailability down, and both zero would never move, so unavailability becomes one.
pub fn fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    replicas: i32,
) -> Result<(i32, i32), NotAPercentage> {
    let surge = scaled_value(max_surge, replicas, true)?;
    let unavailable = scaled_value(max_unavailable, replicas, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// The new ReplicaSet's next size in a rolling update (`NewRSNewReplicas`): up to the
/// surge bound, never past `replicas`.
pub fn next_new_size(replicas: i32, max_surge: i32, all: &[Size], new: &Size) -> i32 {
    let current: i32 = all.iter().map(|s| s.replicas).sum();
    let max_total = replicas + max_surge;
    if current >= max_total {
        return new.replicas;
    }
    let grow = (max_total - current).min(replicas - new.replicas).max(0);
    new.replicas + grow
}

/// New sizes for old ReplicaSets in a rolling update (`reconcileOldReplicaSets`), oldest
/// first in `old`: unhealthy pods go first, then available ones while at least
/// `replicas - max_unavailable` stay available. Only changed sizes are returned.
pub fn shrink_old(
    replicas: i32,
    max_unavailable: i32,
    new: &Size,
    old: &[Size],
) -> Vec<(String, i32)> {
    let old_count: i32 = old.iter().map(|s| s.replicas).sum();
    if old_count == 0 {
        return Vec::new();
    }
    let all_count = old_count + new.replicas;
    let min_available = replicas - max_unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut sizes: Vec<Size> = old.to_vec();
    // Unhealthy pods first: they give no availability away.
    let mut cleaned = 0;
    for size in sizes.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if size.replicas == 0 || size.available >= size.replicas {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(size.replicas - size.available);
        size.replicas -= down;
        cleaned += down;
    }
    // Then available ones, down to the floor.
    let available: i32 = sizes.iter().map(|s| s.available).sum::<i32>() + new.available;
    if available > min_available {
        let mut left = available - min_available;
        for size in sizes.iter_mut() {
            if left == 0 {
                break;
            }
            if size.replicas == 0 {
                continue;
            }
            let down = size.replicas.min(left);
            size.replicas -= down;
            left -= down;
        }
    }
    changed(old, &sizes)
}

/// Proportional scaling (`scale`): the Deployment's size changed during a rollout, so each
/// active ReplicaSet grows or shrinks in proportion to its share, and what rounding leaves
/// goes to the largest (newest on ties). `active` is newest first.
pub fn scale_proportionally(replicas: i32, max_surge: i32, active: &[Size]) -> Vec<(String, i32)> {
    let allowed = if replicas > 0 {
        replicas + max_surge
    } else {
        0
    };
    let current: i32 = active.iter().map(|s| s.replicas).sum();
    let to_add = allowed - current;
    if to_add == 0 || active.is_empty() {
        return Vec::new();
    }
    // Largest first; newest first among equals (active is newest first, sort is stable).
    let mut order: Vec<usize> = (0..active.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(active[*i].replicas));
    let mut sizes = active.to_vec();
    let mut added = 0;
    for &i in &order {
        let size = &active[i];
        let share = if replicas == 0 {
            -size.replicas
        } else {
            let annotated = size
                .max_replicas
                .filter(|m| *m > 0)
                .unwrap_or(current.max(1));
            let target =
                (f64::from(size.replicas) * f64::from(allowed) / f64::from(annotated)).round();
            // A share is at most what is left to add (or to remove).
            #[allow(clippy::cast_possible_truncation)]
            let wanted = target as i32 - size.replicas;
            if to_add > 0 {
                wanted.clamp(0, to_add - added)
            } else {
                wanted.clamp(to_add - added, 0)
            }
        };
        sizes[i].replicas += share;
        added += share;
    }
    if added != to_add {
        let first = order[0];
        sizes[first].replicas = (sizes[first].replicas + to_add - added).max(0);
    }
    changed(active, &sizes)
}

fn changed(before: &[Size], after: &[Size]) -> Vec<(String, i32)> {
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.replicas != a.replicas)
        .map(|(_, a)| (a.name.clone(), a.replicas))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(name: &str, replicas: i32, available: i32) -> Size {
        Size {
            name: name.into(),
            replicas,
            available,
            max_replicas: None,
        }
    }

    fn pct(text: &str) -> IntOrString {
        IntOrString::String(text.into())
    }

    #[test]
    fn percentages_round_up_for_surge_and_down_for_unavailability() {
        assert_eq!(fenceposts(&pct("25%"), &pct("25%"), 10), Ok((3, 2)));
        assert_eq!(fenceposts(&pct("25%"), &pct("25%"), 20), Ok((5, 5)));
        assert_eq!(
            fenceposts(&IntOrString::Int(0), &pct("10%"), 5),
            Ok((0, 1)),
            "never stuck"
        );
        assert_eq!(
            fenceposts(&IntOrString::Int(2), &IntOrString::Int(0), 5),
            Ok((2, 0))
        );
        assert!(fenceposts(&pct("lots"), &pct("25%"), 5).is_err());
    }

    #[test]
    fn the_new_set_grows_within_the_surge() {
        let old = size("old", 10, 10);
        let new = size("new", 0, 0);
        assert_eq!(next_new_size(10, 3, &[old.clone(), new.clone()], &new), 3);
        let grown = size("new", 3, 0);
        assert_eq!(
            next_new_size(10, 3, &[old, grown.clone()], &grown),
            3,
            "at the bound"
        );
        let shrunk_old = size("old", 2, 2);
        assert_eq!(
            next_new_size(10, 3, &[shrunk_old, grown.clone()], &grown),
            10,
            "never past replicas"
        );
    }

    #[test]
    fn old_sets_shrink_unhealthy_first_then_down_to_the_floor() {
        // 10 replicas, maxUnavailable 2: at least 8 available.
        let new = size("new", 3, 0);
        let old = [size("older", 4, 2), size("old", 6, 6)];
        // Unhealthy: older has 2 unavailable → they go first (max_scaled_down = 13 - 8 - 3 = 2).
        assert_eq!(shrink_old(10, 2, &new, &old), [("older".to_string(), 2)]);
        let healthy = [size("old", 10, 10)];
        assert_eq!(
            shrink_old(10, 2, &size("new", 3, 0), &healthy),
            [("old".to_string(), 8)]
        );
        let new_ready = size("new", 3, 3);
        assert_eq!(
            shrink_old(10, 2, &new_ready, &healthy),
            [("old".to_string(), 5)]
        );
        assert!(shrink_old(10, 2, &size("new", 10, 10), &[size("old", 0, 0)]).is_empty());
    }

    #[test]
    fn the_bounds_hold_through_a_whole_rollout() {
        // Simulate: every pod becomes available at once after each step.
        let (replicas, surge, unavailable) = (20, 5, 5);
        let mut old = size("old", 20, 20);
        let mut new = size("new", 0, 0);
        for _ in 0..20 {
            let grown = next_new_size(replicas, surge, &[old.clone(), new.clone()], &new);
            if grown != new.replicas {
                new.replicas = grown;
            } else {
                for (_, size) in shrink_old(replicas, unavailable, &new, std::slice::from_ref(&old))
                {
                    old.replicas = size;
                }
                old.available = old.available.min(old.replicas);
            }
            assert!(old.replicas + new.replicas <= replicas + surge);
            assert!(old.available + new.available >= replicas - unavailable);
            new.available = new.replicas;
            old.available = old.replicas;
        }
        assert_eq!((old.replicas, new.replicas), (0, 20));
    }

    #[test]
    fn a_resize_mid_rollout_is_shared_in_proportion() {
        let mut newer = size("new", 6, 6);
        newer.max_replicas = Some(13);
        let mut older = size("old", 7, 7);
        older.max_replicas = Some(13);
        // replicas 10 → 20 with surge 3: allowed 23.
        let scaled = scale_proportionally(20, 3, &[newer.clone(), older.clone()]);
        let total: i32 = scaled.iter().map(|(_, r)| r).sum();
        assert_eq!(total, 23, "{scaled:?}");
        assert_eq!(
            scale_proportionally(0, 3, &[newer, older]),
            [("new".to_string(), 0), ("old".to_string(), 0)]
        );
    }
}
