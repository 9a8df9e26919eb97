"""The training engine (:mod:`.engine`) and the models it trains (:mod:`.models`: SCGAN from
:mod:`scgan_bench.scgan.train`, LRGAN from :mod:`.lrgan`, CycleGAN from :mod:`.cyclegan`); their
runs as SR methods (:mod:`.sr_methods`)."""
