"""A class model in the newer metadata= / load_default= idiom, with a schema."""

from marshmallow import Schema, fields, validate


class Response(Schema):
    label = fields.Str(required=True)
    score = fields.Float(required=True)


class Model:
    schema = Response

    def __init__(self):
        self.warmed = 0

    def get_metadata(self):
        return {"name": "new-style", "description": "new idiom", "version": "2.0"}

    def warm(self):
        self.warmed += 1

    def get_predict_args(self):
        return {
            "text": fields.Str(required=True, metadata={"description": "input"}),
            "score": fields.Float(load_default=0.5,
                                  validate=validate.Range(min=0, max=1),
                                  metadata={"description": "a score"}),
            "bad": fields.Bool(load_default=False,
                               metadata={"description": "answer off-schema"}),
        }

    def predict(self, text, score, bad):
        if bad:
            return {"label": text}
        return {"label": text.upper(), "score": score}
