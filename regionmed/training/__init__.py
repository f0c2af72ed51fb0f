"""Progressive pretraining: a LightningModule and a LightningDataModule that receive their parts."""
