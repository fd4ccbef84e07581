"""ELMoForManyLangs (HIT-SCIR) models by name: ``efml-<code>`` for their 44 languages.

Each is a zip in the NLPL vectors repository (repository 11, ids 136-179), as linked from
the download table of ELMoForManyLangs' README (read from a fork's copy, qianchu/ELMoForManyLangs;
the table lists Norwegian Bokmål (165) before Dutch (164); the ids here are the links' ids).
Codes are ISO 639-1 where one exists (Old Church Slavonic ``cu``), else ISO 639-3 (Ancient
Greek ``grc``). ``efml-zh`` is their Chinese model, trained on traditional-script text.

``spacy_elmo.catalog`` makes a catalog entry (format ``efml``) of each, so ``efml-<code>`` is
a model name wherever one is accepted (``weights``, ``load_bilm``, ``download``, ``models``).
"""

from __future__ import annotations

from typing import NamedTuple

PREFIX = "efml-"


class EfmlModel(NamedTuple):
    code: str
    language: str
    nlpl_id: int

    @property
    def name(self) -> str:
        return PREFIX + self.code


# In the order of their README's table.
EFML_MODELS: tuple[EfmlModel, ...] = (
    EfmlModel("ar", "Arabic", 136),
    EfmlModel("bg", "Bulgarian", 137),
    EfmlModel("ca", "Catalan", 138),
    EfmlModel("cs", "Czech", 139),
    EfmlModel("cu", "Old Church Slavonic", 140),
    EfmlModel("da", "Danish", 141),
    EfmlModel("de", "German", 142),
    EfmlModel("el", "Greek", 143),
    EfmlModel("en", "English", 144),
    EfmlModel("es", "Spanish", 145),
    EfmlModel("et", "Estonian", 146),
    EfmlModel("eu", "Basque", 147),
    EfmlModel("fa", "Persian", 148),
    EfmlModel("fi", "Finnish", 149),
    EfmlModel("fr", "French", 150),
    EfmlModel("ga", "Irish", 151),
    EfmlModel("gl", "Galician", 152),
    EfmlModel("grc", "Ancient Greek", 153),
    EfmlModel("he", "Hebrew", 154),
    EfmlModel("hi", "Hindi", 155),
    EfmlModel("hr", "Croatian", 156),
    EfmlModel("hu", "Hungarian", 157),
    EfmlModel("id", "Indonesian", 158),
    EfmlModel("it", "Italian", 159),
    EfmlModel("ja", "Japanese", 160),
    EfmlModel("ko", "Korean", 161),
    EfmlModel("la", "Latin", 162),
    EfmlModel("lv", "Latvian", 163),
    EfmlModel("nb", "Norwegian Bokmål", 165),
    EfmlModel("nl", "Dutch", 164),
    EfmlModel("nn", "Norwegian Nynorsk", 166),
    EfmlModel("pl", "Polish", 167),
    EfmlModel("pt", "Portuguese", 168),
    EfmlModel("ro", "Romanian", 169),
    EfmlModel("ru", "Russian", 170),
    EfmlModel("sk", "Slovak", 171),
    EfmlModel("sl", "Slovene", 172),
    EfmlModel("sv", "Swedish", 173),
    EfmlModel("tr", "Turkish", 174),
    EfmlModel("ug", "Uyghur", 175),
    EfmlModel("uk", "Ukrainian", 176),
    EfmlModel("ur", "Urdu", 177),
    EfmlModel("vi", "Vietnamese", 178),
    EfmlModel("zh", "Chinese", 179),
)
