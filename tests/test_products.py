from pathlib import Path

import pytest

from broadcaster.show.products import Catalog, Product, ProductError, load_catalog, load_product

ROOT = Path(__file__).resolve().parents[1]
LONGJING_IMAGE = "scripts_library/products/images/longjing.png"
TEA = """
name = "西湖龙井"
name_en = "West Lake Longjing tea"
aliases = ["龙井", "Longjing", "Dragon Well"]
price = 99.9
original_price = 129
discount = "7.7折"
unit = "罐"
stock = 200
facts = ["明前采摘。"]

[specs]
"净含量" = "250 g"
"""


def library(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "products"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_the_shipped_samples_load() -> None:
    catalog = load_catalog(ROOT / "scripts_library")
    assert len(catalog) >= 2
    tea = catalog.get("longjing-250")
    assert tea is not None and tea.price == 99.9 and tea.currency == "CNY" and tea.stock == 200
    assert tea.specs["净含量"] == "250 g"


def test_a_library_without_products_is_an_empty_catalog(tmp_path: Path) -> None:
    catalog = load_catalog(tmp_path)
    assert len(catalog) == 0
    assert catalog.find("龙井") == []
    assert catalog.grounding() == ""


def test_the_id_defaults_to_the_file_name(tmp_path: Path) -> None:
    catalog = load_catalog(library(tmp_path, tea=TEA))
    assert [p.id for p in catalog] == ["tea"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'x'\nprice = 'cheap'\n", "price = 'cheap'"),
        ("name = 'x'\n", "price: missing"),
        ("name = 'x'\nprice = 1\ncolour = 'red'\n", "colour: unknown key"),
        ("name = 'x'\nprice = 10\noriginal_price = 5\n", "original_price 5.0 is below price 10.0"),
        ("name = 'x'\nprice = 1\ncurrency = 'EUR'\n", "currency = 'EUR'"),
        ("name = 'x'\nprice = 1\ndiscount = 'big sale'\n", "discount = 'big sale'"),
        ("name = 'x'\nprice = -1\n", "price = -1"),
        ("name = 'x'\nprice = 1\nstock = 2.5\n", "stock = 2.5"),
        ("name = 'x'\nprice = 1\n[specs]\nweight = 250\n", "specs.weight = 250"),
        ("name = 'x\nprice = 1\n", "not valid TOML"),
        ("id = 'Bad Id'\nname = 'x'\nprice = 1\n", "id = 'Bad Id'"),
    ],
)
def test_a_bad_product_file_names_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ProductError) as err:
        load_catalog(library(tmp_path, broken=text))
    assert "broken.toml" in str(err.value)
    assert expected in str(err.value)


def test_two_products_may_not_share_an_id_or_a_name(tmp_path: Path) -> None:
    with pytest.raises(ProductError, match="already the id"):
        load_catalog(
            library(tmp_path, a="id = 'x'\nname = 'A'\nprice = 1\n", b="id = 'x'\nname = 'B'\nprice = 1\n")
        )
    with pytest.raises(ProductError, match="already a name of"):
        Catalog(
            [Product(id="a", name="Tea", price=1), Product(id="b", name="B", aliases=("ＴＥＡ",), price=1)]
        )


def test_find_matches_names_and_aliases_whatever_their_case_and_width(tmp_path: Path) -> None:
    charger = Product(id="charger", name="磁吸充电宝", aliases=("充电宝", "power bank"), price=129)
    catalog = Catalog([load_product(library(tmp_path, tea=TEA) / "products" / "tea.toml"), charger])
    tea = catalog.products[0]
    assert catalog.find("这款龙井很香") == [tea]
    assert catalog.find("ＬＯＮＧＪＩＮＧ is back") == [tea]
    assert catalog.find("try the dragon  well tea") == [tea]
    assert catalog.find("Power Bank and 龙井 together") == [charger, tea]
    assert catalog.find("磁吸充电宝到了") == [charger]
    assert catalog.find("powerbanks") == []  # a Latin name only as whole words
    assert catalog.find("今天天气不错") == []


def test_grounding_lists_the_figures_an_llm_may_use(tmp_path: Path) -> None:
    catalog = load_catalog(library(tmp_path, tea=TEA))
    sheet = catalog.grounding()
    for part in (
        "西湖龙井",
        "also called",
        "Longjing",
        "price 99.9 CNY",
        "was 129 CNY",
        "7.7折",
        "stock 200 罐",
    ):
        assert part in sheet
    assert "净含量 250 g" in sheet and "明前采摘。" in sheet
    assert catalog.grounding([]) == ""


def test_money_is_said_in_the_products_currency() -> None:
    tea = Product(id="t", name="茶", price=99.9)
    cup = Product(id="c", name="Cup", price=19.99, currency="USD")
    assert tea.money(99.9, english=False) == "99.9元"
    assert tea.money(129.0, english=True) == "129 yuan"
    assert cup.money(19.99, english=True) == "$19.99"
    assert cup.money(19.99, english=False) == "19.99美元"


def test_selling_points_faq_and_image_are_loaded_grounded_and_documented(tmp_path: Path) -> None:
    folder = library(tmp_path)
    (folder / "products" / "images").mkdir()
    (folder / "products" / "images" / "tea.png").write_bytes((ROOT / LONGJING_IMAGE).read_bytes())
    text = TEA.replace("[specs]", 'selling_points = ["豆香浓"]\nimage = "images/tea.png"\n\n[specs]')
    text += '\n[[faq]]\nq = "怎么泡？"\na = "85℃的水，每次3克。"\n'
    catalog = load_catalog(library(tmp_path, tea=text))
    tea = catalog.products[0]
    assert tea.selling_points == ("豆香浓",) and tea.faq[0].q == "怎么泡？"
    assert Path(tea.image).is_absolute() and Path(tea.image).read_bytes()[:4] == b"\x89PNG"
    assert tea.documented == ("明前采摘。", "豆香浓", "85℃的水，每次3克。")
    sheet = catalog.grounding()
    assert "selling points: 豆香浓" in sheet and "Q: 怎么泡？ A: 85℃的水，每次3克。" in sheet


def test_the_shipped_samples_have_selling_points_faq_and_a_small_picture() -> None:
    for product in load_catalog(ROOT / "scripts_library"):
        assert len(product.selling_points) >= 2 and len(product.faq) >= 2
        image = Path(product.image)
        assert image.is_file() and image.suffix == ".png" and image.stat().st_size < 60_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'x'\nprice = 1\nimage = 'images/none.png'\n", "broken.toml:3: image = 'images/none.png'"),
        ("name = 'x'\nprice = 1\n\n[[faq]]\nq = 'why?'\n", "broken.toml:4: faq.0.a: missing"),
        ("name = 'x'\nprice = 1\nselling_points = ['', 'b']\n", "broken.toml:3: selling_points"),
        ("name = 'x'\n\nprice = 'cheap'\n", "broken.toml:3: price = 'cheap'"),
        ("name = 'x'\nprice = 1\n[specs]\nweight = 250\n", "broken.toml:4: specs.weight = 250"),
        ("name = 'x\nprice = 1\n", "broken.toml:1: not valid TOML"),
    ],
)
def test_errors_name_the_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ProductError) as err:
        load_catalog(library(tmp_path, broken=text))
    assert expected in str(err.value)
