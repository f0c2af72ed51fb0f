"""Zero-shot prompts: the templates (``zeroshot.yaml``, data) and the code that fills and embeds them
(:mod:`regionmed.prompts.templates`), shared by the evaluation, the service and the drift reference; and
``report_vocabulary.yaml``, the finding and anatomy terms that :mod:`regionmed.annotation.mentions` reads out
of reports."""
