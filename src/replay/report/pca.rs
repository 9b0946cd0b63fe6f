//! The latent-space view of the report: a 2-D principal component projection of the windows'
//! posterior means (covariance matrix, Jacobi eigen-decomposition), drawn as an SVG scatter plot.

use std::fmt::Write;

use super::LatentPoint;
use super::chart::{ALERT_FILL, LABEL_FILL};

/// Most points drawn per scatter plot; anomalous and labelled windows are kept first.
const MAX_POINTS: usize = 4_000;
const SIZE: f64 = 380.0;
const PAD: f64 = 34.0;

/// The top two principal components of a point set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pca {
    /// Mean of the points, length = dimension.
    pub mean: Vec<f64>,
    /// Unit eigenvectors of the covariance, largest eigenvalue first; each is signed so that its
    /// largest-magnitude component is positive. Fewer than two when the dimension is below two.
    pub components: Vec<Vec<f64>>,
    /// Fraction of the total variance each component explains (0 when the total is 0).
    pub explained: Vec<f64>,
}

impl Pca {
    /// Coordinates of `x` on the components (missing components read 0).
    pub(super) fn project(&self, x: &[f32]) -> [f64; 2] {
        let mut out = [0.0; 2];
        for (o, c) in out.iter_mut().zip(&self.components) {
            *o = c
                .iter()
                .zip(x)
                .zip(&self.mean)
                .map(|((c, x), m)| c * (f64::from(*x) - m))
                .sum();
        }
        out
    }
}

/// PCA of `points` (all of one dimension). `None` with fewer than two points, a dimension of 0,
/// or points of different dimensions.
pub(crate) fn pca2(points: &[&[f32]]) -> Option<Pca> {
    let d = points.first()?.len();
    if points.len() < 2 || d == 0 || points.iter().any(|p| p.len() != d) {
        return None;
    }
    let n = points.len() as f64;
    let mut mean = vec![0.0; d];
    for p in points {
        for (m, x) in mean.iter_mut().zip(p.iter()) {
            *m += f64::from(*x) / n;
        }
    }
    let mut cov = vec![vec![0.0; d]; d];
    for p in points {
        let centred: Vec<f64> = p
            .iter()
            .zip(&mean)
            .map(|(x, m)| f64::from(*x) - m)
            .collect();
        for (row, ci) in cov.iter_mut().zip(&centred) {
            for (c, cj) in row.iter_mut().zip(&centred) {
                *c += ci * cj / (n - 1.0);
            }
        }
    }
    let (values, vectors) = jacobi_eigen(cov);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
    let mut components = Vec::new();
    let mut explained = Vec::new();
    for &k in order.iter().take(2) {
        let mut v: Vec<f64> = (0..d).map(|i| vectors[i][k]).collect();
        let biggest = v
            .iter()
            .copied()
            .fold(0.0f64, |b, x| if x.abs() > b.abs() { x } else { b });
        if biggest < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        components.push(v);
        explained.push(if total > 0.0 {
            values[k].max(0.0) / total
        } else {
            0.0
        });
    }
    Some(Pca {
        mean,
        components,
        explained,
    })
}

/// Eigenvalues and eigenvectors (as columns: `vectors[i][k]` is component `i` of vector `k`) of a
/// symmetric matrix, by cyclic Jacobi rotations.
pub(crate) fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    let scale: f64 = a
        .iter()
        .flatten()
        .map(|x| x * x)
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off <= scale * 1e-24 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q] == 0.0 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (kp, kq) = (row[p], row[q]);
                    row[p] = c * kp - s * kq;
                    row[q] = s * kp + c * kq;
                }
                let (upper, lower) = a.split_at_mut(q);
                for (pk, qk) in upper[p].iter_mut().zip(lower[0].iter_mut()) {
                    let (x, y) = (*pk, *qk);
                    *pk = c * x - s * y;
                    *qk = s * x + c * y;
                }
                for row in v.iter_mut() {
                    let (kp, kq) = (row[p], row[q]);
                    row[p] = c * kp - s * kq;
                    row[q] = s * kp + c * kq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

/// Picks at most `MAX_POINTS` points: every anomalous or labelled one first (evenly thinned if
/// they alone are too many), then evenly spaced normal ones.
fn pick(points: &[LatentPoint]) -> Vec<&LatentPoint> {
    let flagged = |p: &&LatentPoint| p.is_anomaly || p.label == Some(true);
    let (special, normal): (Vec<&LatentPoint>, Vec<&LatentPoint>) =
        points.iter().partition(flagged);
    let special = thin(special, MAX_POINTS);
    let mut out = thin(normal, MAX_POINTS - special.len());
    out.extend(special);
    out
}

/// Evenly spaced `keep` of `xs` (all of them when there are no more).
fn thin(xs: Vec<&LatentPoint>, keep: usize) -> Vec<&LatentPoint> {
    if xs.len() <= keep {
        return xs;
    }
    (0..keep).map(|i| xs[i * xs.len() / keep]).collect()
}

/// Per alert episode (by index), its windows' projections in time order.
fn episode_paths(points: &[LatentPoint], pca: &Pca) -> Vec<Vec<[f64; 2]>> {
    let episodes = points
        .iter()
        .filter_map(|p| p.episode)
        .max()
        .map_or(0, |m| m + 1);
    let mut paths = vec![Vec::new(); episodes];
    for p in points {
        if let Some(e) = p.episode {
            paths[e].push(pca.project(&p.mu));
        }
    }
    paths
}

/// An ellipse holding a 2-D point cloud: its mean, the eigenvectors of its covariance and
/// two standard deviations along each.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ellipse {
    pub center: [f64; 2],
    /// Unit axes.
    pub axes: [[f64; 2]; 2],
    /// Half-lengths along the axes.
    pub lengths: [f64; 2],
}

impl Ellipse {
    /// The two-standard-deviation ellipse of `points`; `None` for fewer than three.
    pub(super) fn two_sigma(points: &[[f64; 2]]) -> Option<Ellipse> {
        if points.len() < 3 {
            return None;
        }
        let n = points.len() as f64;
        let mean = [
            points.iter().map(|p| p[0]).sum::<f64>() / n,
            points.iter().map(|p| p[1]).sum::<f64>() / n,
        ];
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        for p in points {
            let (dx, dy) = (p[0] - mean[0], p[1] - mean[1]);
            a += dx * dx;
            b += dx * dy;
            c += dy * dy;
        }
        let (a, b, c) = (a / n, b / n, c / n);
        // Eigen-decomposition of [[a, b], [b, c]].
        let half_trace = (a + c) / 2.0;
        let root = (((a - c) / 2.0).powi(2) + b * b).sqrt();
        let (l1, l2) = (half_trace + root, (half_trace - root).max(0.0));
        let angle = 0.5 * (2.0 * b).atan2(a - c);
        let (cos, sin) = (angle.cos(), angle.sin());
        Some(Ellipse {
            center: mean,
            axes: [[cos, sin], [-sin, cos]],
            lengths: [2.0 * l1.sqrt(), 2.0 * l2.sqrt()],
        })
    }

    /// Two corners of the box around the ellipse, so a plot's range can hold it.
    pub(super) fn bounds(&self) -> [[f64; 2]; 2] {
        let [[cos, sin], _] = self.axes;
        let [a, b] = self.lengths;
        let half = [
            ((a * cos).powi(2) + (b * sin).powi(2)).sqrt(),
            ((a * sin).powi(2) + (b * cos).powi(2)).sqrt(),
        ];
        [
            [self.center[0] - half[0], self.center[1] - half[1]],
            [self.center[0] + half[0], self.center[1] + half[1]],
        ]
    }
}

/// The scatter plot of one machine's windows, or a note when there are too few windows.
pub(crate) fn render_latent_scatter(points: &[LatentPoint]) -> String {
    let mus: Vec<&[f32]> = points.iter().map(|p| p.mu.as_slice()).collect();
    let Some(pca) = pca2(&mus) else {
        return r#"<p class="note">Too few scored windows for a latent-space projection.</p>"#
            .to_owned();
    };
    let shown = pick(points);
    let xy: Vec<[f64; 2]> = shown.iter().map(|p| pca.project(&p.mu)).collect();
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    let trajectories = episode_paths(points, &pca);
    // The normal cloud: the two-standard-deviation ellipse of the windows outside episodes.
    let normal: Vec<[f64; 2]> = points
        .iter()
        .filter(|p| p.episode.is_none() && !p.is_anomaly)
        .map(|p| pca.project(&p.mu))
        .collect();
    let cloud = Ellipse::two_sigma(&normal);
    let corners = cloud.iter().flat_map(Ellipse::bounds);
    for p in xy
        .iter()
        .chain(trajectories.iter().flatten())
        .chain(corners.collect::<Vec<_>>().iter())
    {
        for k in 0..2 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let to_px = |v: f64, k: usize| {
        let span = (hi[k] - lo[k]).max(1e-12);
        let u = (v - lo[k]) / span;
        if k == 0 {
            PAD + u * (SIZE - 2.0 * PAD)
        } else {
            SIZE - PAD - u * (SIZE - 2.0 * PAD)
        }
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg class="scatter" viewBox="0 0 {SIZE} {SIZE}" width="{SIZE}" height="{SIZE}" role="img" aria-label="latent projection"><rect x="{PAD}" y="{PAD}" width="{w}" height="{w}" fill="#fbfbfd" stroke="#d0d4dc"/>"##,
        w = SIZE - 2.0 * PAD
    );
    if let Some(ellipse) = &cloud {
        let (cx, cy) = (to_px(ellipse.center[0], 0), to_px(ellipse.center[1], 1));
        // Half-axes in pixels along the ellipse's own axes (the scales of x and y differ).
        let along = |axis: [f64; 2], length: f64| {
            let end = [
                ellipse.center[0] + axis[0] * length,
                ellipse.center[1] + axis[1] * length,
            ];
            (to_px(end[0], 0) - cx, to_px(end[1], 1) - cy)
        };
        let (ax, ay) = along(ellipse.axes[0], ellipse.lengths[0]);
        let (bx, by) = along(ellipse.axes[1], ellipse.lengths[1]);
        // The image of a circle under the linear map with columns (ax, ay) and (bx, by).
        let _ = write!(
            s,
            r##"<path d="M {x0:.1} {y0:.1} A 1 1 0 1 1 {x1:.1} {y1:.1} A 1 1 0 1 1 {x0:.1} {y0:.1} Z" transform="matrix({ax:.4} {ay:.4} {bx:.4} {by:.4} {cx:.1} {cy:.1})" fill="#dfe7f3" fill-opacity="0.8" stroke="#b8c6dc" vector-effect="non-scaling-stroke"/>"##,
            x0 = 1.0,
            y0 = 0.0,
            x1 = -1.0,
            y1 = 0.0,
        );
    }
    // Normal points first so flagged ones are drawn on top.
    for pass in [false, true] {
        for (p, c) in shown.iter().zip(&xy) {
            if (p.is_anomaly || p.label == Some(true)) != pass {
                continue;
            }
            let (x, y) = (to_px(c[0], 0), to_px(c[1], 1));
            let fill = if p.is_anomaly { ALERT_FILL } else { "#7f9cc0" };
            let _ = write!(
                s,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.2" fill="{fill}" fill-opacity="0.7"/>"#
            );
            if p.label == Some(true) {
                let _ = write!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="4.2" fill="none" stroke="{LABEL_FILL}" stroke-width="1.3"/>"#
                );
            }
        }
    }
    // Each episode's windows in time order, numbered at its first window.
    for (number, path) in trajectories.iter().enumerate() {
        let line: String = path
            .iter()
            .map(|c| format!("{:.1},{:.1} ", to_px(c[0], 0), to_px(c[1], 1)))
            .collect();
        let Some(first) = path.first() else {
            continue;
        };
        let (x, y) = (to_px(first[0], 0), to_px(first[1], 1));
        let _ = write!(
            s,
            r##"<polyline points="{line}" fill="none" stroke="{ALERT_FILL}" stroke-width="1.4" stroke-opacity="0.85"/><circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="#fff" stroke="{ALERT_FILL}" stroke-width="1.4"/><text x="{tx:.1}" y="{ty:.1}" class="tick" font-weight="700" fill="{ALERT_FILL}">{n}</text>"##,
            tx = x + 5.0,
            ty = y - 5.0,
            n = number + 1
        );
    }
    let pct = |k: usize| pca.explained.get(k).map_or(0.0, |e| e * 100.0);
    let _ = write!(
        s,
        r#"<text x="{cx}" y="{by}" class="tick" text-anchor="middle">PC1 ({p1:.0}% of variance)</text><text x="12" y="{cx}" class="tick" text-anchor="middle" transform="rotate(-90 12 {cx})">PC2 ({p2:.0}% of variance)</text><text x="{PAD}" y="{ty}" class="tick">{n} of {total} windows</text></svg>"#,
        cx = SIZE / 2.0,
        by = SIZE - 10.0,
        p1 = pct(0),
        p2 = pct(1),
        ty = PAD - 8.0,
        n = shown.len(),
        total = points.len(),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_direction_of_a_known_set() {
        // Points spread along (3, 4)/5 with a small spread along (-4, 3)/5.
        // Every `a` appears with both signs of `b`, so `a` and `b` are uncorrelated.
        let pts: Vec<Vec<f32>> = (-50..=50)
            .flat_map(|k| [0.05f32, -0.05].map(move |b| (k as f32 * 0.1, b)))
            .map(|(a, b)| vec![1.0 + 0.6 * a - 0.8 * b, -2.0 + 0.8 * a + 0.6 * b])
            .collect();
        let refs: Vec<&[f32]> = pts.iter().map(|p| p.as_slice()).collect();
        let pca = pca2(&refs).unwrap();
        assert!(
            (pca.components[0][0] - 0.6).abs() < 1e-5,
            "{:?}",
            pca.components
        );
        assert!((pca.components[0][1] - 0.8).abs() < 1e-5);
        assert!((pca.components[1][0].abs() - 0.8).abs() < 1e-5);
        assert!((pca.mean[0] - 1.0).abs() < 1e-5 && (pca.mean[1] + 2.0).abs() < 1e-5);
        assert!(pca.explained[0] > 0.99);
    }

    #[test]
    fn jacobi_diagonalises_a_symmetric_matrix() {
        let a = vec![
            vec![4.0, 1.0, 2.0],
            vec![1.0, 3.0, 0.5],
            vec![2.0, 0.5, 5.0],
        ];
        let (values, vectors) = jacobi_eigen(a.clone());
        for k in 0..3 {
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i][j] * vectors[j][k]).sum();
                assert!((av - values[k] * vectors[i][k]).abs() < 1e-9);
            }
        }
        let trace: f64 = values.iter().sum();
        assert!((trace - 12.0).abs() < 1e-9);
    }

    #[test]
    fn too_few_or_ragged_points_give_none() {
        assert!(pca2(&[]).is_none());
        assert!(pca2(&[&[1.0, 2.0][..]]).is_none());
        assert!(pca2(&[&[1.0, 2.0][..], &[1.0][..]]).is_none());
    }

    #[test]
    fn the_normal_cloud_ellipse_follows_the_points_spread() {
        // Points along the diagonal, spread 2 along it and 0.5 across.
        let mut points = Vec::new();
        for i in -50..=50 {
            for j in [-1.0, 1.0] {
                let (u, v) = (f64::from(i) * 2.0 * 3f64.sqrt() / 50.0, j * 0.5);
                let d = std::f64::consts::FRAC_1_SQRT_2;
                points.push([3.0 + d * (u - v), -1.0 + d * (u + v)]);
            }
        }
        let e = Ellipse::two_sigma(&points).unwrap();
        assert!((e.center[0] - 3.0).abs() < 1e-9 && (e.center[1] + 1.0).abs() < 1e-9);
        // The long axis is the diagonal (either sign).
        let d = std::f64::consts::FRAC_1_SQRT_2;
        assert!((e.axes[0][0].abs() - d).abs() < 1e-6 && (e.axes[0][1].abs() - d).abs() < 1e-6);
        assert!(e.axes[0][0] * e.axes[0][1] > 0.0);
        // Two standard deviations: sd along is about 2 (uniform over ±2√3), across 0.5.
        assert!((e.lengths[0] - 4.0).abs() < 0.2, "{:?}", e.lengths);
        assert!((e.lengths[1] - 1.0).abs() < 1e-6, "{:?}", e.lengths);
        assert!(Ellipse::two_sigma(&points[..2]).is_none());
    }

    #[test]
    fn thinning_keeps_flagged_points() {
        let points: Vec<LatentPoint> = (0..10_000)
            .map(|i| LatentPoint {
                mu: vec![i as f32, 0.0],
                is_anomaly: i % 1000 == 0,
                label: None,
                episode: None,
            })
            .collect();
        let shown = pick(&points);
        assert!(shown.len() <= MAX_POINTS);
        assert_eq!(shown.iter().filter(|p| p.is_anomaly).count(), 10);
    }
}
