"""The synthetic phantom corpus as a build source: tasks are image indices, rendered in workers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from regionmed.corpus.records import RawRegion, SourceRecord
from regionmed.corpus.reports import describe
from regionmed.corpus.synthetic import generate_phantom
from regionmed.params_pipeline import SyntheticParams

# A separate random stream for the words, so changing templates never moves a pixel.
TEXT_STREAM = 1


class SyntheticSource:
    name = "synthetic"
    root = None

    def __init__(self, params: SyntheticParams, seed: int, image_size: int):
        self.params, self.seed, self.image_size = params, seed, image_size
        self._patients = self._assign_patients()

    def _assign_patients(self) -> list[str]:
        """1..images_per_patient_max consecutive images per patient, from a seeded stream."""
        rng = np.random.default_rng([self.seed, 2**31 - 1])
        patients: list[str] = []
        while len(patients) < self.params.n_images:
            k = int(rng.integers(1, self.params.images_per_patient_max + 1))
            patients += [f"SYN-P{len(set(patients)):06d}"] * k
        return patients[: self.params.n_images]

    def tasks(self) -> Iterator[tuple[str, int]]:
        for index in range(self.params.n_images):
            yield f"syn-{index:06d}", index

    def materialise(self, task: tuple[str, int]) -> SourceRecord:
        record_id, index = task
        phantom = generate_phantom(index, self.seed, self.image_size, self.params)
        text = describe(
            phantom,
            np.random.default_rng([self.seed, index, TEXT_STREAM]),
            self.params.negatives_per_report,
            self.params.absent_presence_questions,
        )
        return SourceRecord(
            record_id=record_id,
            source=self.name,
            pixels=phantom.pixels,
            patient_id=self._patients[index],
            modality=phantom.modality.name,
            body_part=phantom.modality.body_part,
            report=text.report,
            modality_text=text.modality_text,
            anatomy_text=text.anatomy_text,
            finding_text=text.finding_text,
            labels=text.labels,
            regions=[
                RawRegion(r.bbox, r.label, r.phrase, list(r.hard_negatives), r.kind, r.size, normalised=True)
                for r in text.regions
            ],
            qa=[q.to_dict() for q in text.qa],
        )
