//! Where a model's normal windows lie in its latent space. A VAE trained with a small KL weight
//! does not fill its prior N(0, I): some latent dims spread wider than 1 (operating points),
//! others barely move, and the dims move together. Windows decoded from the prior therefore vary
//! about half as much as the data (measured on the bundled model). Drawing instead from the
//! aggregate posterior of the training windows (the mixture of their posteriors, here matched by
//! its mean and full covariance: cov(μ) + mean σ² on the diagonal) gives samples that spread like
//! the data.

use serde::{Deserialize, Serialize};

use super::init::SeededRng;

/// A Gaussian over the latent space fitted to windows' posteriors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentDistribution {
    /// Windows it was fitted to.
    pub windows: usize,
    /// Mean of the windows' posterior means.
    pub mean: Vec<f64>,
    /// Covariance of the posterior means plus the mean posterior variance on the diagonal,
    /// row-major `latent × latent`.
    pub covariance: Vec<Vec<f64>>,
}

/// Why a latent distribution cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidLatentDistribution {
    #[error("latent distribution has {got} dims, the architecture {expected}")]
    Dims { got: usize, expected: usize },
    #[error("latent distribution holds a value that is not finite")]
    NotFinite,
    #[error("latent covariance is not symmetric positive definite")]
    NotPositiveDefinite,
}

impl LatentDistribution {
    /// Fits the distribution to windows' posterior means `mu` and log variances `logvar` (one
    /// `latent`-long vector per window each). `None` without windows.
    pub fn fit<'a>(
        mu: impl IntoIterator<Item = &'a [f32]>,
        logvar: impl IntoIterator<Item = &'a [f32]>,
    ) -> Option<LatentDistribution> {
        let mu: Vec<&[f32]> = mu.into_iter().collect();
        let latent = mu.first()?.len();
        let n = mu.len() as f64;
        let mean: Vec<f64> = (0..latent)
            .map(|d| mu.iter().map(|m| f64::from(m[d])).sum::<f64>() / n)
            .collect();
        let mut covariance = vec![vec![0.0; latent]; latent];
        for m in &mu {
            for a in 0..latent {
                let da = f64::from(m[a]) - mean[a];
                for b in 0..=a {
                    covariance[a][b] += da * (f64::from(m[b]) - mean[b]) / n;
                }
            }
        }
        for a in 0..latent {
            let (upper, lower) = covariance.split_at_mut(a);
            for (b, row) in upper.iter_mut().enumerate() {
                row[a] = lower[0][b];
            }
        }
        let mut windows = 0usize;
        let mut variance = vec![0.0; latent];
        for l in logvar {
            windows += 1;
            for (v, x) in variance.iter_mut().zip(l) {
                *v += f64::from(*x).exp();
            }
        }
        for (a, v) in variance.iter().enumerate() {
            covariance[a][a] += v / windows.max(1) as f64;
        }
        Some(LatentDistribution {
            windows: mu.len(),
            mean,
            covariance,
        })
    }

    /// Checks the shape against `latent` dims and that the covariance factorises.
    pub fn validate(&self, latent: usize) -> Result<(), InvalidLatentDistribution> {
        if self.mean.len() != latent
            || self.covariance.len() != latent
            || self.covariance.iter().any(|row| row.len() != latent)
        {
            return Err(InvalidLatentDistribution::Dims {
                got: self.mean.len(),
                expected: latent,
            });
        }
        if self
            .mean
            .iter()
            .chain(self.covariance.iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err(InvalidLatentDistribution::NotFinite);
        }
        self.cholesky().map(|_| ())
    }

    /// The lower-triangular factor `L` with `L Lᵀ` the covariance.
    fn cholesky(&self) -> Result<Vec<Vec<f64>>, InvalidLatentDistribution> {
        let n = self.mean.len();
        let c = &self.covariance;
        let mut l = vec![vec![0.0; n]; n];
        for i in 0..n {
            if (0..i).any(|j| (c[i][j] - c[j][i]).abs() > 1e-9 * (1.0 + c[i][j].abs())) {
                return Err(InvalidLatentDistribution::NotPositiveDefinite);
            }
            for j in 0..=i {
                let sum = c[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
                if i == j {
                    if sum <= 0.0 || !sum.is_finite() {
                        return Err(InvalidLatentDistribution::NotPositiveDefinite);
                    }
                    l[i][j] = sum.sqrt();
                } else {
                    l[i][j] = sum / l[j][j];
                }
            }
        }
        Ok(l)
    }

    /// `n` latent vectors drawn from the distribution, row-major `n × latent`.
    pub(crate) fn draw(
        &self,
        n: usize,
        rng: &mut SeededRng,
    ) -> Result<Vec<f32>, InvalidLatentDistribution> {
        let l = self.cholesky()?;
        let latent = self.mean.len();
        let mut z = Vec::with_capacity(n * latent);
        let mut e = vec![0.0; latent];
        for _ in 0..n {
            e.iter_mut().for_each(|v| *v = rng.normal());
            for (a, row) in l.iter().enumerate() {
                let v = self.mean[a] + row[..=a].iter().zip(&e).map(|(x, y)| x * y).sum::<f64>();
                z.push(v as f32);
            }
        }
        Ok(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latent vectors of a known correlated Gaussian, with log variances all `ln 0.25`.
    fn known(n: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let mut rng = SeededRng::new(9);
        let mu = (0..n)
            .map(|_| {
                let (a, b) = (rng.normal(), rng.normal());
                // x ~ N(1, 4), y = 0.5 x + N(0, 1): cov [[4, 2], [2, 2]].
                let x = 1.0 + 2.0 * a;
                vec![x as f32, (0.5 * x + b - 0.5) as f32]
            })
            .collect();
        let logvar = vec![vec![0.25f32.ln(); 2]; n];
        (mu, logvar)
    }

    #[test]
    fn fit_matches_the_moments_of_the_posteriors() {
        let (mu, logvar) = known(20_000);
        let d = LatentDistribution::fit(
            mu.iter().map(Vec::as_slice),
            logvar.iter().map(Vec::as_slice),
        )
        .unwrap();
        assert_eq!(d.windows, 20_000);
        let want_mean = [1.0, 0.0];
        let want_cov = [[4.25, 2.0], [2.0, 2.25]];
        for (got, want) in d.mean.iter().zip(want_mean) {
            assert!((got - want).abs() < 0.05, "{:?}", d.mean);
        }
        for (got, want) in d.covariance.iter().flatten().zip(want_cov.iter().flatten()) {
            assert!((got - want).abs() < 0.1, "{:?}", d.covariance);
        }
        assert_eq!(d.covariance[0][1], d.covariance[1][0]);
        d.validate(2).unwrap();
        assert!(LatentDistribution::fit(std::iter::empty(), std::iter::empty()).is_none());
    }

    #[test]
    fn draws_have_the_fitted_mean_and_covariance() {
        let d = LatentDistribution {
            windows: 1,
            mean: vec![1.0, -2.0, 0.5],
            covariance: vec![
                vec![4.0, 1.0, 0.0],
                vec![1.0, 2.0, -0.5],
                vec![0.0, -0.5, 1.0],
            ],
        };
        let n = 40_000;
        let z = d.draw(n, &mut SeededRng::new(4)).unwrap();
        assert_eq!(z.len(), n * 3);
        for a in 0..3 {
            let mean = z
                .iter()
                .skip(a)
                .step_by(3)
                .map(|v| f64::from(*v))
                .sum::<f64>()
                / n as f64;
            assert!((mean - d.mean[a]).abs() < 0.05, "dim {a}: mean {mean}");
            for b in 0..3 {
                let cov = (0..n)
                    .map(|i| {
                        (f64::from(z[i * 3 + a]) - d.mean[a])
                            * (f64::from(z[i * 3 + b]) - d.mean[b])
                    })
                    .sum::<f64>()
                    / n as f64;
                assert!(
                    (cov - d.covariance[a][b]).abs() < 0.1,
                    "cov[{a}][{b}] {cov} vs {}",
                    d.covariance[a][b]
                );
            }
        }
        // The same seed draws the same vectors.
        assert_eq!(d.draw(n, &mut SeededRng::new(4)).unwrap(), z);
    }

    #[test]
    fn a_broken_distribution_is_refused() {
        let good = LatentDistribution {
            windows: 1,
            mean: vec![0.0, 0.0],
            covariance: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
        };
        assert_eq!(
            good.validate(3),
            Err(InvalidLatentDistribution::Dims {
                got: 2,
                expected: 3
            })
        );
        let mut nan = good.clone();
        nan.mean[1] = f64::NAN;
        assert_eq!(nan.validate(2), Err(InvalidLatentDistribution::NotFinite));
        let mut singular = good.clone();
        singular.covariance = vec![vec![1.0, 1.0], vec![1.0, 1.0]];
        assert_eq!(
            singular.validate(2),
            Err(InvalidLatentDistribution::NotPositiveDefinite)
        );
        let mut asymmetric = good;
        asymmetric.covariance[0][1] = 0.5;
        assert_eq!(
            asymmetric.validate(2),
            Err(InvalidLatentDistribution::NotPositiveDefinite)
        );
    }
}
