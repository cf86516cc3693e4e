"""More models written against the contract: uploads that fail, odd shapes."""

from marshmallow import fields


class UploadRaises:
    """Raises after seeing its upload; the message names the temporary copy."""

    def get_predict_args(self):
        return {"data": fields.Field(required=True, metadata={"type": "file"})}

    def predict(self, data):
        assert open(data.filename, "rb").read()
        raise RuntimeError(f"cannot read {data.filename}")


class NoPredict:
    """Declares metadata but no predict: its predict endpoint answers 501."""

    def get_metadata(self):
        return {"name": "no-predict", "description": "metadata only"}


class MetadataLinks:
    """Metadata that names itself and brings links of its own."""

    def get_metadata(self):
        return {
            "name": "Linked model",
            "description": "has links",
            "links": [{"rel": "docs", "href": "https://example.org/docs"}],
        }

    def predict(self, **kwargs):
        return "ok"


class DictSchema:
    """A response schema given as a dict of fields."""

    schema = {"answer": fields.Int(required=True)}

    def get_predict_args(self):
        return {"answer": fields.Raw(load_default=42)}

    def predict(self, answer):
        return {"answer": answer}


class BadInit:
    """A class entry point whose constructor raises."""

    def __init__(self):
        raise OSError("weights.bin is missing")

    def predict(self, **kwargs):
        return None


class Types:
    """One argument of each common type, for conversion and OpenAPI tests."""

    def get_predict_args(self):
        from marshmallow import validate

        return {
            "i": fields.Int(required=True, validate=validate.Range(min=0, max=9)),
            "f": fields.Float(load_default=1.5),
            "b": fields.Bool(load_default=False),
            "s": fields.Str(load_default="a", validate=validate.OneOf(["a", "b"])),
            "items": fields.List(fields.Int(), load_default=[]),
            "token": fields.Str(load_default=None,
                                metadata={"location": "headers",
                                          "description": "sent as a header"}),
        }

    def predict(self, **kwargs):
        return kwargs


class AsyncModel:
    """predict is a coroutine function."""

    async def predict(self, **kwargs):
        return "awaited"


class Chatty:
    """Prints and logs while it predicts, as models do."""

    def predict(self, **kwargs):
        import logging
        import sys

        print("chatty: printed to stdout")
        print("chatty: printed to stderr", file=sys.stderr, flush=True)
        logging.getLogger("chatty").warning("chatty: logged a warning")
        return "said it"
