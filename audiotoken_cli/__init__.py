"""audiotoken: turn sounds into pictures with AudioToken (Yariv et al., Interspeech 2023).

Kept import-free on purpose: ``audiotoken --help`` must not pay for torch.
"""

__version__ = "0.1.0"
