#!/usr/bin/env bash
# A separate environment where AllenNLP 2.10.1's ELMo imports beside torch 2.13 (CPU), for
# bench/run.py --allennlp-python. AllenNLP pins torch<1.13 and spacy<3.4, so everything is
# installed with --no-deps at exact versions; torch, numpy, h5py, requests and the like come
# from the system site-packages. torchvision is left out on purpose (PyPI only has CUDA
# builds, which fail beside a CPU torch); bench/worker.py stubs the import, ELMo never uses it.
#
# Usage: bash bench/setup_allennlp.sh [VENV_DIR]     (default /tmp/allennlp-venv)
set -euo pipefail
venv="${1:-/tmp/allennlp-venv}"
python -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --no-deps \
  allennlp==2.10.1 \
  transformers==4.26.1 tokenizers==0.13.3 huggingface-hub==0.10.1 \
  cached-path==1.1.6 rich==12.6.0 commonmark==0.9.2 \
  google-cloud-storage==2.7.0 google-cloud-core==2.8.0 google-api-core==2.44.0 google-auth==2.62.2 \
  google-resumable-media==2.11.0 google-crc32c==1.9.0 googleapis-common-protos==1.76.0 proto-plus==1.29.0 \
  protobuf==7.36.2 pyasn1_modules==0.4.2 opentelemetry-api==1.45.2 \
  boto3==1.26.0 botocore==1.29.165 s3transfer==0.6.2 urllib3==1.26.20 \
  lmdb==3.0.0 dill==0.4.1 base58==2.1.1 more-itertools==11.2.1 fairscale==0.4.13
"$venv/bin/python" "$(dirname "$0")/run.py" --help > /dev/null
"$venv/bin/python" -c "
import sys; sys.path.insert(0, '$(dirname "$0")')
import worker; worker.stub_torchvision()
from allennlp.modules.elmo import Elmo; import torch, allennlp.version
print('allennlp', allennlp.version.VERSION, 'torch', torch.__version__, 'OK')"
echo "now: python bench/run.py --allennlp-python $venv/bin/python"
