"""The synthetic shop's text and shape material: categories, product types, words, weights, dirt strings.

Random draws pick entries by position, so editing, adding or reordering any entry changes the generated data.
"""

from __future__ import annotations

import numpy as np

# Product type: (name, category, median price in GBP, use phrase, complement types).
CATEGORIES = ("kitchen", "home decor", "lighting", "stationery", "garden", "bags", "toys", "party")
PRODUCT_TYPES = (
    ("MUG", "kitchen", 2.55, "for morning tea and coffee", ("COASTER SET", "TEAPOT")),
    ("TEAPOT", "kitchen", 8.95, "that brews four generous cups", ("MUG", "TEA TOWEL")),
    ("COASTER SET", "kitchen", 3.75, "to protect tables from hot drinks", ("MUG",)),
    ("CAKE TIN", "kitchen", 4.95, "for storing homemade bakes", ("CAKE CASES", "CAKE STAND")),
    ("CAKE CASES", "kitchen", 0.55, "for cupcakes and muffins", ("CAKE TIN",)),
    ("TEA TOWEL", "kitchen", 2.95, "for drying the dishes", ("APRON",)),
    ("APRON", "kitchen", 5.95, "for baking and cooking", ("TEA TOWEL",)),
    ("CUSHION COVER", "home decor", 3.75, "to brighten up a sofa", ("THROW BLANKET",)),
    (
        "THROW BLANKET",
        "home decor",
        12.75,
        "to snuggle under on cold evenings",
        ("CUSHION COVER", "HOT WATER BOTTLE"),
    ),
    ("HOT WATER BOTTLE", "home decor", 4.95, "to keep warm on winter nights", ("THROW BLANKET",)),
    ("PHOTO FRAME", "home decor", 2.95, "for treasured family photos", ("HANGING HEART",)),
    ("HANGING HEART", "home decor", 2.55, "to hang on doors and windows", ("PHOTO FRAME",)),
    ("WALL CLOCK", "home decor", 8.50, "with a silent sweep movement", ()),
    ("DOORMAT", "home decor", 7.95, "to welcome guests at the door", ()),
    ("CANDLE HOLDER", "lighting", 2.95, "for pillar candles", ("SCENTED CANDLE",)),
    ("T-LIGHT HOLDER", "lighting", 1.25, "that casts a warm glow", ("TEA LIGHTS",)),
    ("LANTERN", "lighting", 6.75, "for indoor and outdoor evenings", ("TEA LIGHTS",)),
    ("STRING LIGHTS", "lighting", 5.95, "with twenty warm white bulbs", ("LANTERN",)),
    ("SCENTED CANDLE", "lighting", 3.25, "with a soft long-lasting fragrance", ("CANDLE HOLDER",)),
    ("TEA LIGHTS", "lighting", 0.85, "in a pack of twenty-four", ("T-LIGHT HOLDER", "LANTERN")),
    ("NOTEBOOK", "stationery", 1.65, "with lined pages", ("PEN SET",)),
    ("PEN SET", "stationery", 2.10, "for writing and doodling", ("NOTEBOOK",)),
    ("GREETING CARD", "stationery", 0.42, "for birthdays and celebrations", ("WRAPPING PAPER",)),
    ("WRAPPING PAPER", "stationery", 0.42, "in a generous folded sheet", ("GIFT TAGS",)),
    ("GIFT TAGS", "stationery", 0.85, "to finish every present", ("WRAPPING PAPER",)),
    ("STICKER SHEET", "stationery", 0.85, "for cards and scrapbooks", ("NOTEBOOK",)),
    ("PLANT POT", "garden", 2.95, "for herbs and houseplants", ("WATERING CAN", "SEED TIN")),
    ("WATERING CAN", "garden", 6.95, "for the patio and window boxes", ("GARDEN GLOVES",)),
    ("BIRD HOUSE", "garden", 5.95, "to hang in a tree", ("BIRD FEEDER",)),
    ("BIRD FEEDER", "garden", 3.95, "for seeds and fat balls", ("BIRD HOUSE",)),
    ("GARDEN GLOVES", "garden", 2.10, "for weeding and pruning", ("PLANT POT",)),
    ("SEED TIN", "garden", 1.95, "to keep seed packets dry", ("PLANT POT",)),
    ("TOTE BAG", "bags", 2.10, "for shopping and days out", ("PURSE",)),
    ("JUMBO SHOPPER BAG", "bags", 1.95, "that carries a week of groceries", ("PURSE",)),
    ("PURSE", "bags", 2.55, "with a zip and card slots", ("KEYRING",)),
    ("WASHBAG", "bags", 3.75, "for weekends away", ()),
    ("UMBRELLA", "bags", 5.95, "that folds into any bag", ()),
    ("KEYRING", "bags", 1.25, "to keep keys together", ("PURSE",)),
    ("JIGSAW PUZZLE", "toys", 4.95, "with five hundred pieces", ("PLAYING CARDS",)),
    ("PLAYING CARDS", "toys", 1.25, "for family game nights", ("JIGSAW PUZZLE",)),
    ("SKIPPING ROPE", "toys", 1.45, "for the playground", ()),
    ("SPINNING TOP", "toys", 0.85, "that spins for ages", ()),
    ("RAG DOLL", "toys", 3.75, "with a stitched smile", ()),
    ("PARTY BUNTING", "party", 4.95, "to string across the garden", ("BALLOONS",)),
    ("PAPER NAPKINS", "party", 0.85, "in a pack of twenty", ("PAPER CUPS",)),
    ("PAPER CUPS", "party", 0.85, "in a pack of twelve", ("PAPER NAPKINS", "PAPER PLATES")),
    ("PAPER PLATES", "party", 0.85, "in a pack of twelve", ("PAPER CUPS",)),
    ("BALLOONS", "party", 0.65, "in a bag of twenty", ("PARTY BUNTING",)),
    ("CAKE STAND", "party", 9.95, "with three tiers", ("CAKE CASES",)),
)
MATERIALS = {
    "kitchen": ("CERAMIC", "ENAMEL", "TIN", "GLASS", "BAMBOO", "COTTON"),
    "home decor": ("WOODEN", "COTTON", "LINEN", "METAL", "KNITTED", "FELT"),
    "lighting": ("GLASS", "ZINC", "METAL", "WOODEN", "CERAMIC"),
    "stationery": ("PAPER", "KRAFT", "RECYCLED", "LEATHER"),
    "garden": ("ZINC", "TERRACOTTA", "WOODEN", "ENAMEL"),
    "bags": ("JUTE", "CANVAS", "COTTON", "OILCLOTH"),
    "toys": ("WOODEN", "TIN", "FELT", "CARDBOARD"),
    "party": ("PAPER", "CARDBOARD", "FABRIC", "GLITTER"),
}
STYLES = (  # title word, description phrase
    ("VINTAGE", "with an antique-inspired distressed finish"),
    ("RETRO", "with bold mid-century colours"),
    ("SCANDI", "in clean Scandinavian lines"),
    ("RUSTIC", "with a hand-made farmhouse feel"),
    ("FLORAL", "printed with a cottage garden floral pattern"),
    ("SPOTTY", "covered in cheerful polka dots"),
    ("REGENCY", "with an elegant regency tea-party motif"),
    ("MODERN", "with a minimal contemporary look"),
)
COLOURS = (
    "RED",
    "PINK",
    "BLUE",
    "GREEN",
    "IVORY",
    "WHITE",
    "BLACK",
    "CREAM",
    "GREY",
    "YELLOW",
    "ORANGE",
    "PURPLE",
)
SIZES = ("", "", "", "", "SMALL ", "LARGE ", "MINI ", "JUMBO ")
PACKS = ("", "", "", "", "", ", SET OF 3", ", SET OF 6")
EXTRAS = ("Gift boxed.", "Hand finished.", "Wipe clean.", "Makes a lovely gift.", "Designed in England.", "")
BRANDS = {
    "kitchen": ("Hearth & Home", "Pantry Lane"),
    "home decor": ("Little Nook", "Hearth & Home"),
    "lighting": ("Glow Works", "Nordlys"),
    "stationery": ("Paper Lantern Co", "Inkwell"),
    "garden": ("Bramble & Co", "Potting Shed"),
    "bags": ("Carry On", "Marigold Studio"),
    "toys": ("Tinker Toys", "Little Nook"),
    "party": ("Party Parade", "Marigold Studio"),
}
FOREIGN_COUNTRIES = (  # country, weight
    ("Germany", 0.22),
    ("France", 0.20),
    ("EIRE", 0.12),
    ("Spain", 0.07),
    ("Netherlands", 0.07),
    ("Belgium", 0.06),
    ("Switzerland", 0.05),
    ("Portugal", 0.05),
    ("Australia", 0.04),
    ("Norway", 0.04),
    ("Italy", 0.04),
    ("Sweden", 0.04),
)
HOUR_WEIGHTS = np.array(
    [0, 0, 0, 0, 0, 0, 0, 0.3, 2, 4, 6, 7, 8, 7, 6, 5, 3, 1.5, 0.8, 0.5, 0.3, 0, 0, 0], float
)
WEEKDAY_WEIGHTS = np.array([1.0, 1.1, 1.1, 1.3, 0.8, 0.15, 0.6])  # Monday..Sunday
QUANTITIES = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 24, 36, 48])
QUANTITY_WEIGHTS = np.array([0.28, 0.15, 0.07, 0.07, 0.02, 0.08, 0.025, 0.04, 0.11, 0.045, 0.007, 0.011])
BAD_TIMESTAMPS = (
    "31/02/2011 25:61",
    "not a date",
    "2024-02-30 12:00:00",
    "00/00/0000 00:00",
    "2023-13-01 10:15:00",
    "#VALUE!",
    "2011-12-09 24:61:00",
    "??",
)
# Characters for junk lines: no comma, quote or anything a reader could take for a line break.
JUNK_ALPHABET = np.array(
    list("\x01\x02\x07\x1b\x7fÿþ�§¤#@!$%^&*~|;:<>?=+_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefxyz0123456789")
)
NON_PRODUCT_CODES = {  # stock code -> description, as in Online Retail
    "POST": "POSTAGE",
    "DOT": "DOTCOM POSTAGE",
    "M": "Manual",
    "BANK CHARGES": "Bank Charges",
    "AMAZONFEE": "AMAZON FEE",
}
CODE_LETTERS = "ABCDEFGHJKLMNPRSW"  # stock-code suffixes: a design's colour variants, some lone designs
