"""The packaged model as a function: uploads decoded and prepared (``uploads``), the engine that
embeds them (``engine``) and the retrieval index format (``index``). Below serving and monitoring,
which both use it; it imports no BentoML."""
