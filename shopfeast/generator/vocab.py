"""Words the generator builds its shop from: catalog taxonomy, profile vocabularies, search terms.

Kept apart from the logic so the shop's flavour can change without touching the dynamics.
"""

from __future__ import annotations

from pipelines.contract import EVENT_TYPES

# category -> (typical price, weight in traffic, subcategories as (name, singular noun))
CATEGORIES: dict[str, tuple[float, float, tuple[tuple[str, str], ...]]] = {
    "electronics": (
        120.0,
        1.4,
        (
            ("headphones", "headphones"),
            ("phone cases", "phone case"),
            ("chargers", "charger"),
            ("smart watches", "smart watch"),
            ("speakers", "speaker"),
        ),
    ),
    "computers": (
        300.0,
        0.8,
        (
            ("laptops", "laptop"),
            ("monitors", "monitor"),
            ("keyboards", "keyboard"),
            ("mice", "mouse"),
            ("webcams", "webcam"),
        ),
    ),
    "home_kitchen": (
        45.0,
        1.3,
        (
            ("cookware", "pan"),
            ("kitchen knives", "knife"),
            ("coffee makers", "coffee maker"),
            ("storage", "storage box"),
            ("bedding", "duvet cover"),
        ),
    ),
    "fashion": (
        40.0,
        1.5,
        (
            ("t-shirts", "t-shirt"),
            ("jeans", "pair of jeans"),
            ("jackets", "jacket"),
            ("dresses", "dress"),
            ("sneakers", "pair of sneakers"),
        ),
    ),
    "sports_outdoors": (
        55.0,
        1.0,
        (
            ("running shoes", "pair of running shoes"),
            ("yoga mats", "yoga mat"),
            ("water bottles", "water bottle"),
            ("tents", "tent"),
            ("cycling gear", "bike light"),
        ),
    ),
    "beauty": (
        22.0,
        1.1,
        (
            ("skincare", "face cream"),
            ("shampoo", "shampoo"),
            ("perfume", "perfume"),
            ("makeup", "lipstick"),
            ("nail care", "nail polish"),
        ),
    ),
    "toys_games": (
        28.0,
        0.8,
        (
            ("board games", "board game"),
            ("puzzles", "puzzle"),
            ("building blocks", "block set"),
            ("dolls", "doll"),
            ("outdoor toys", "kite"),
        ),
    ),
    "books": (
        15.0,
        0.9,
        (
            ("novels", "novel"),
            ("cookbooks", "cookbook"),
            ("children's books", "picture book"),
            ("comics", "comic"),
            ("travel guides", "travel guide"),
        ),
    ),
    "grocery": (
        8.0,
        1.2,
        (
            ("coffee", "bag of coffee"),
            ("tea", "box of tea"),
            ("snacks", "snack pack"),
            ("pasta", "pack of pasta"),
            ("olive oil", "bottle of olive oil"),
        ),
    ),
    "pet_supplies": (
        25.0,
        0.7,
        (
            ("dog food", "bag of dog food"),
            ("cat litter", "cat litter"),
            ("pet toys", "pet toy"),
            ("pet beds", "pet bed"),
            ("aquarium", "aquarium filter"),
        ),
    ),
    "garden": (
        35.0,
        0.6,
        (
            ("plant pots", "plant pot"),
            ("seeds", "seed pack"),
            ("garden tools", "garden trowel"),
            ("hoses", "garden hose"),
            ("outdoor lighting", "solar lamp"),
        ),
    ),
    "baby": (
        30.0,
        0.6,
        (
            ("diapers", "pack of diapers"),
            ("baby bottles", "baby bottle"),
            ("strollers", "stroller"),
            ("baby clothes", "baby romper"),
            ("wipes", "pack of wipes"),
        ),
    ),
}

# subcategory -> the subcategory its products are bought with (a phone case with a charger).
COMPLEMENTS: dict[str, str] = {
    "headphones": "chargers",
    "phone cases": "chargers",
    "chargers": "phone cases",
    "smart watches": "chargers",
    "speakers": "headphones",
    "laptops": "mice",
    "monitors": "keyboards",
    "keyboards": "mice",
    "mice": "keyboards",
    "webcams": "headphones",
    "cookware": "kitchen knives",
    "kitchen knives": "cookware",
    "coffee makers": "coffee",
    "storage": "bedding",
    "bedding": "storage",
    "t-shirts": "jeans",
    "jeans": "t-shirts",
    "jackets": "jeans",
    "dresses": "sneakers",
    "sneakers": "t-shirts",
    "running shoes": "water bottles",
    "yoga mats": "water bottles",
    "water bottles": "running shoes",
    "tents": "outdoor lighting",
    "cycling gear": "water bottles",
    "skincare": "makeup",
    "shampoo": "skincare",
    "perfume": "makeup",
    "makeup": "nail care",
    "nail care": "makeup",
    "board games": "puzzles",
    "puzzles": "board games",
    "building blocks": "dolls",
    "dolls": "building blocks",
    "outdoor toys": "building blocks",
    "novels": "tea",
    "cookbooks": "olive oil",
    "children's books": "building blocks",
    "comics": "novels",
    "travel guides": "tents",
    "coffee": "coffee makers",
    "tea": "snacks",
    "snacks": "tea",
    "pasta": "olive oil",
    "olive oil": "pasta",
    "dog food": "pet toys",
    "cat litter": "pet beds",
    "pet toys": "dog food",
    "pet beds": "pet toys",
    "aquarium": "pet toys",
    "plant pots": "seeds",
    "seeds": "plant pots",
    "garden tools": "hoses",
    "hoses": "garden tools",
    "outdoor lighting": "garden tools",
    "diapers": "wipes",
    "baby bottles": "diapers",
    "strollers": "baby clothes",
    "baby clothes": "diapers",
    "wipes": "diapers",
}

ADJECTIVES = (
    "Classic",
    "Premium",
    "Eco",
    "Compact",
    "Pro",
    "Ultra",
    "Essential",
    "Deluxe",
    "Smart",
    "Vintage",
    "Urban",
    "Lite",
    "Max",
    "Soft",
    "Bold",
    "Everyday",
)
BRAND_HEADS = (
    "Nor",
    "Vel",
    "Aro",
    "Lum",
    "Kai",
    "Zen",
    "Bri",
    "Sol",
    "Ter",
    "Mira",
    "Oak",
    "Fen",
    "Ly",
    "Dax",
    "Quo",
    "Rho",
    "Sil",
    "Tav",
    "Ember",
    "Cor",
)
BRAND_TAILS = (
    "dex",
    "ora",
    "ix",
    "ium",
    "well",
    "tek",
    "vo",
    "line",
    "co",
    "ly",
    "ton",
    "wick",
    "berg",
    "field",
    "nova",
)
COLLECTIONS = (
    "Everyday Essentials",
    "Summer Collection",
    "Winter Warmers",
    "Gift Guide",
    "New Arrivals",
    "Bestsellers",
    "Eco Line",
    "Clearance",
    "Home Office",
    "Outdoor Adventure",
)
TAGLINES = (
    "Built to last.",
    "Loved by thousands of customers.",
    "Designed for daily use.",
    "Great value for everyday life.",
    "Made with sustainable materials.",
    "A customer favourite.",
)

COUNTRIES = ("NL", "DE", "FR", "BE", "ES", "IT", "AT", "IE", "PT", "GB", "PL", "SE")
COUNTRY_WEIGHTS = (0.22, 0.2, 0.14, 0.08, 0.08, 0.08, 0.04, 0.03, 0.03, 0.05, 0.03, 0.02)
# Canonical values plus a few free-text spellings the contract asks pipelines to normalise.
GENDERS = ("female", "male", "other", "unknown", "F", "M", "Female", "Male")
GENDER_WEIGHTS = (0.46, 0.44, 0.02, 0.04, 0.01, 0.01, 0.01, 0.01)
LOCATION_TYPES = ("urban", "suburban", "rural")
LOCATION_WEIGHTS = (0.55, 0.3, 0.15)
LOYALTY = ("none", "silver", "gold", "platinum")
EDUCATION = ("high_school", "vocational", "bachelor", "master", "doctorate")
EDUCATION_WEIGHTS = (0.28, 0.2, 0.3, 0.17, 0.05)
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_WEIGHTS = (0.55, 0.35, 0.10)
PAGE_CONTEXTS = ("homepage", "search", "product_page", "category", "cart", "checkout")
EVENT_CODE = {name: i for i, name in enumerate(EVENT_TYPES)}
PAGE_CODE = {name: i for i, name in enumerate(PAGE_CONTEXTS)}
CURRENCY = "EUR"

# Share of sessions starting in each UTC hour, by device class (mobile evenings, desktop office).
HOURS_DESKTOP = (
    0.4,
    0.2,
    0.1,
    0.1,
    0.1,
    0.3,
    0.8,
    1.6,
    2.6,
    3.4,
    3.8,
    3.6,
    3.4,
    3.6,
    3.6,
    3.3,
    3.0,
    2.8,
    3.0,
    3.6,
    4.0,
    3.4,
    2.2,
    1.0,
)
HOURS_MOBILE = (
    1.2,
    0.6,
    0.3,
    0.2,
    0.2,
    0.4,
    1.0,
    2.0,
    2.4,
    2.2,
    2.2,
    2.6,
    3.4,
    3.0,
    2.4,
    2.4,
    2.6,
    3.0,
    3.6,
    4.4,
    5.0,
    5.2,
    4.2,
    2.4,
)
# Monday .. Sunday
WEEKDAY_WEIGHTS = (1.0, 0.95, 0.95, 1.0, 0.85, 1.05, 1.25)
