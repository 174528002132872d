"""The pure engine: the run state machine (``machine``) and the approval rules (``quorum``). No I/O."""
