"""Third-party SR methods (installed as ``scgan_bench.baselines``): one module and one card per
method. Learned baselines land here with the weights manager; the interpolation baselines are
built in (``scgan_bench.methods.interpolation``)."""
