"""A model whose import takes a while and is counted.

Importing this module sleeps ``DEEPAAS_TEST_IMPORT_SECONDS`` (default 0),
as a model importing a large framework does, and appends the importing
process's id to the file named by ``DEEPAAS_TEST_IMPORT_LOG`` (if set):
a test can count how many times, and where, the model was imported.
"""

import os
import time

from webargs import fields

time.sleep(float(os.environ.get("DEEPAAS_TEST_IMPORT_SECONDS", "0")))
if os.environ.get("DEEPAAS_TEST_IMPORT_LOG"):
    with open(os.environ["DEEPAAS_TEST_IMPORT_LOG"], "a") as log:
        log.write(f"{os.getpid()}\n")


def get_predict_args():
    return {"value": fields.Str(load_default="hi")}


def predict(value):
    return {"value": value, "pid": os.getpid()}
