"""The model bundle: one folder that holds everything the runtime needs to classify a post.

```
bundle/
  manifest.json      what is here: provenance, every file's sha256 and size, the model variants
  tokenizer.json     Hugging Face tokenizers file
  preprocess.json    {"text": TextConfig.to_dict(), "image": ImageConfig.to_dict()}
  labels.json        the class names, exactly `LABEL_NAMES` in that order
  model.<variant>.onnx   one per variant (`crisislens.runtime.variants`)
```

`manifest` holds the format and its rules, `write` writes a bundle and edits its manifest,
`verify` checks and loads one (`load_bundle`, `verify_bundle`).
"""

from crisislens.runtime.bundle.manifest import (
    FORMAT,
    FORMAT_VERSION,
    INTENDED,
    LABELS,
    MANIFEST,
    PRECISIONS,
    PREPROCESS,
    QUANTIZATIONS,
    REQUIRED_FILES,
    TOKENIZER,
    Bundle,
    BundleError,
    Variant,
    VariantLike,
    VariantSpec,
    hash_file,
)
from crisislens.runtime.bundle.verify import load_bundle, verify_bundle
from crisislens.runtime.bundle.write import set_temperature, update_metrics, write_bundle

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INTENDED",
    "LABELS",
    "MANIFEST",
    "PRECISIONS",
    "PREPROCESS",
    "QUANTIZATIONS",
    "REQUIRED_FILES",
    "TOKENIZER",
    "Bundle",
    "BundleError",
    "Variant",
    "VariantLike",
    "VariantSpec",
    "hash_file",
    "load_bundle",
    "set_temperature",
    "update_metrics",
    "verify_bundle",
    "write_bundle",
]
