"""Make the toy corpora this course trains on.

Writes four files next to this script:

  pretrain.txt          general knowledge in simple English: animals, countries,
                        colours, the calendar, weather, food, everyday life, tools, jobs
  pretrain_probes.json  prompts whose next word a pretrained model should know
  cooking.txt           a small cooking corpus for the fine-tuning chapters
  cooking_probes.json   prompts about facts that only the cooking corpus states
  sport.txt             a second fine-tuning domain (games, gear, moves), for several adapters
  sport_probes.json     prompts about facts that only the sport corpus states

Why generate the text instead of downloading some?  A 64-wide model trained for
about a minute on a laptop CPU can learn only a small vocabulary, and only facts
it sees many times in exactly the same words.  Writing the text from small fact
tables gives us that control, and the checks at the end prove each probe is
learnable in principle: its sentence occurs often, and wherever its prompt occurs
the very next word is the answer.

Standard library only and deterministic (seeded random.Random streams, no set order),
so running it twice gives byte-identical files:  python data/make_corpora.py
"""

import argparse
import json
import os
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 1234

# ---------------------------------------------------------------------------
# Pretraining facts.  Every sentence that states a probed fact is built from
# these tables in one fixed wording, so the prompt is always followed by its answer.
# ---------------------------------------------------------------------------

# name: kind, sound (None: not stated), food, home, legs, looks, sentences of its own
ANIMALS = {
    "cow": ("farm animal", "moo", "grass", "lives on the farm", "four", "its coat is black and white", ["the cow gives us fresh milk.", "the cow is big, calm and gentle.", "a baby cow is called a calf."]),
    "dog": ("pet", "woof", "meat", "lives in a house with its family", "four", "its fur is soft and brown", ["the dog is a loyal friend.", "the dog loves to run in the park and catch a ball.", "a baby dog is called a puppy."]),
    "cat": ("pet", "meow", "fish", "lives in a house with its family", "four", "its fur is grey and soft", ["the cat likes to sleep in the warm sun.", "the cat can climb trees and jump very high.", "a baby cat is called a kitten."]),
    "sheep": ("farm animal", "baa", "grass", "lives on the farm", "four", "its wool is thick and white", ["the farmer cuts the wool of the sheep once a year.", "we make warm jumpers from wool.", "a baby sheep is called a lamb."]),
    "pig": ("farm animal", "oink", "corn", "lives on the farm", "four", "its skin is pink", ["the pig likes to roll in the mud to stay cool.", "the pig is a clever animal."]),
    "duck": ("bird", "quack", "seeds", "lives on the lake", "two", "its feathers are white", ["the duck swims with its flat orange feet.", "the duck likes to dive under the water."]),
    "horse": ("farm animal", "neigh", "hay", "lives in the stable", "four", "its coat is brown and shiny", ["the horse can run very fast.", "people ride the horse across the fields."]),
    "hen": ("bird", "cluck", "seeds", "lives in the henhouse", "two", "its feathers are red and brown", ["the hen lays an egg almost every day.", "the hen looks after her little chicks."]),
    "lion": ("wild animal", "roar", "meat", "lives in the grassland", "four", "its fur is golden", ["the lion is called the king of the animals.", "the lion sleeps for most of the day."]),
    "owl": ("bird", "hoot", "mice", "lives in the forest", "two", "its feathers are brown and white", ["the owl is awake all night.", "the owl has big round eyes."]),
    "frog": ("small animal", "croak", "flies", "lives in the pond", "four", "its skin is green and wet", ["the frog can jump very far.", "the frog starts life as a tiny tadpole."]),
    "bee": ("insect", "buzz", "nectar", "lives in a hive", "six", "its body is yellow and black", ["the bee visits many flowers.", "the bee works hard all summer long."]),
    "snake": ("wild animal", "hiss", "mice", "lives in the long grass", "no", "its skin is smooth and green", ["the snake moves by sliding along the ground.", "the snake lies in the sun to keep warm."]),
    "mouse": ("small animal", "squeak", "cheese", "lives in a hole in the wall", "four", "its fur is grey", ["the mouse is tiny and quick.", "the mouse has a long thin tail.", "the mouse makes small holes in the cheese."]),
    "monkey": ("wild animal", None, "bananas", "lives in the jungle", "four", "its fur is brown", ["the monkey swings from tree to tree.", "the monkey is playful and clever."]),
    "camel": ("desert animal", None, "dates", "lives in the desert", "four", "its coat is sandy brown", ["the camel has a hump on its back.", "the camel can walk for days without water."]),
    "rabbit": ("small animal", None, "carrots", "lives in a burrow", "four", "its fur is soft and white", ["the rabbit has long ears.", "the rabbit hops across the field."]),
    "bear": ("wild animal", "growl", "honey", "lives in the forest", "four", "its fur is thick and brown", ["the bear sleeps all winter in a cave.", "the bear is big and strong."]),
    "panda": ("wild animal", None, "bamboo", "lives in the mountains of china", "four", "its fur is black and white", ["the panda spends most of the day eating.", "the panda is shy and gentle."]),
    "fox": ("wild animal", None, "berries", "lives in the forest", "four", "its fur is orange", ["the fox has a long bushy tail.", "the fox is quiet and clever."]),
    "elephant": ("wild animal", None, "fruit", "lives in the grassland", "four", "its skin is grey", ["the elephant is the biggest animal on land.", "the elephant uses its long trunk to drink."]),
    "giraffe": ("wild animal", None, "leaves", "lives in the grassland", "four", "its coat is yellow with brown spots", ["the giraffe has a very long neck.", "the giraffe can reach the tops of tall trees."]),
    "penguin": ("bird", None, "fish", "lives on the ice", "two", "its feathers are black and white", ["the penguin cannot fly, but it swims very well.", "the penguin walks in a funny way."]),
    "whale": ("sea animal", None, "plankton", "lives in the sea", "no", "its skin is dark grey", ["the whale is the biggest animal in the world.", "the whale sings long songs under the water."]),
    "spider": ("small animal", None, "flies", "lives in a web", "eight", "its body is small and dark", ["the spider spins a web of fine silk.", "the spider waits quietly for its food."]),
    "ant": ("insect", None, "crumbs", "lives in a nest under the ground", "six", "its body is small and black", ["the ant is small but very strong.", "the ant works with its friends as a team."]),
}
FARM = ["cow", "sheep", "pig", "duck", "horse", "hen", "dog", "cat"]
ZOO = ["lion", "monkey", "camel", "panda", "elephant", "giraffe", "penguin"]
WOODS = ["fox", "frog", "spider", "ant", "rabbit", "mouse", "snake", "bee", "owl", "bear"]

# country: capital, continent, language, the capital is known for its ..., food people enjoy, a sentence
COUNTRIES = {
    "france": ("paris", "europe", "french", "museums", "bread and cheese", "france has green hills and long rivers."),
    "spain": ("madrid", "europe", "spanish", "parks", "oranges", "spain has sunny beaches and warm weather."),
    "italy": ("rome", "europe", "italian", "fountains", "pasta", "italy is shaped like a long boot."),
    "germany": ("berlin", "europe", "german", "music", "sausages", "germany has deep forests and old castles."),
    "portugal": ("lisbon", "europe", "portuguese", "trams", "fish", "portugal lies next to the ocean."),
    "greece": ("athens", "europe", "greek", "temples", "olives", "greece has many small islands."),
    "russia": ("moscow", "europe and asia", "russian", "palaces", "soup", "russia is the largest country in the world."),
    "japan": ("tokyo", "asia", "japanese", "trains", "rice", "japan is made of many islands."),
    "china": ("beijing", "asia", "chinese", "gardens", "dumplings", "china has more people than almost any other country."),
    "india": ("delhi", "asia", "hindi", "markets", "rice", "india has tall mountains and hot plains."),
    "egypt": ("cairo", "africa", "arabic", "pyramids", "dates", "the long river nile flows through egypt."),
    "kenya": ("nairobi", "africa", "swahili", "wildlife", "tea", "kenya is home to lions, elephants and giraffes."),
    "peru": ("lima", "south america", "spanish", "beaches", "potatoes", "peru has high mountains and old cities."),
    "mexico": ("mexico city", "north america", "spanish", "squares", "beans", "mexico has deserts, beaches and jungles."),
    "korea": ("seoul", "asia", "korean", "palaces", "rice", "korea has many hills and mountains."),
    "canada": ("ottawa", "north america", "english and french", "lakes", "pancakes", "canada has long cold winters."),
}

# the thing, as it follows "the colour of": its colour, a sentence about it
COLOURS = {
    "the sky": ("blue", "on a clear day the sky is bright and wide."),
    "grass": ("green", "grass grows in fields, parks and gardens."),
    "a banana": ("yellow", "a banana is a sweet fruit that monkeys love."),
    "snow": ("white", "snow is cold and soft and falls from the clouds."),
    "a tomato": ("red", "a tomato is round and juicy."),
    "a carrot": ("orange", "a carrot grows under the ground."),
    "a lemon": ("yellow", "a lemon tastes very sour."),
    "a crow": ("black", "a crow is a clever bird."),
    "a plum": ("purple", "a plum is a soft sweet fruit with one seed."),
    "chocolate": ("brown", "chocolate is a sweet treat."),
}
COLOUR_MIXING = ["if you mix blue and yellow paint, you get green.", "red and white paint make pink.",
                 "a rainbow has seven colours.", "red, yellow and blue are bright colours.",
                 "black and white are not in the rainbow."]

DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
DAY_LIFE = ["on monday the school week begins.", "on friday many people feel happy because the weekend is near.",
            "on saturday children play in the park.", "on sunday many families eat a big lunch together.",
            "on wednesday we are in the middle of the week."]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]

# season: weather, months, sentences about it
SEASONS = {
    "spring": ("warm", "march, april and may", ["in spring flowers open and birds build nests.", "in spring the days grow longer.", "lambs are born on the farm in spring."]),
    "summer": ("hot", "june, july and august", ["in summer people swim in the sea.", "in summer children eat ice cream in the shade.", "in summer the sun shines until late."]),
    "autumn": ("cool", "september, october and november", ["in autumn the leaves turn red and brown and fall from the trees.", "in autumn farmers pick apples.", "in autumn the wind blows hard."]),
    "winter": ("cold", "december, january and february", ["in winter snow falls and the days are short.", "in winter people wear warm coats, hats and gloves.", "in winter children build snowmen.", "in winter the hills are covered in snow."]),
}
WEATHER = ["when it rains, we carry an umbrella.", "when the sun shines, we go outside to play.",
           "a rainbow appears when the sun shines through the rain.", "dark clouds often bring rain.",
           "thunder is loud and lightning is bright.", "on a windy day the trees bend and shake.",
           "fog makes it hard to see far.", "after the rain there are puddles on the path.", "if you walk in the rain, you get soaking wet."]

# tool: what you do with it (the canonical sentence is "you <use> with a <tool>."), a sentence
TOOLS = {
    "saw": ("cut wood", "a saw has a long blade with sharp teeth."),
    "shovel": ("dig a hole", "a shovel has a long handle and a wide blade."),
    "hammer": ("hit a nail", "a hammer is heavy at one end."),
    "broom": ("sweep the floor", "a broom has a long handle and stiff bristles."),
    "needle": ("sew a button", "a needle is thin and has a tiny hole for the thread."),
    "brush": ("paint a wall", "a brush has soft hairs at one end."),
    "key": ("open a door", "a key is small and made of metal."),
    "pen": ("write a letter", "a pen is full of ink."),
    "knife": ("cut bread", "a knife is sharp, so you must be careful."),
    "spoon": ("eat soup", "a spoon is round and a little deep."),
    "rake": ("gather leaves", "a rake has a row of long thin teeth."),
    "bucket": ("carry water", "a bucket has a handle on top."),
}
TOOL_PLACES = ["you can find it in the shed.", "every home should have one.", "it is a very useful tool.",
               "keep it in a safe place when you are done."]

# job: what the worker does (canonical "a <job> <does>."), a sentence
JOBS = {
    "baker": ("makes bread", "a baker starts work very early in the morning."),
    "doctor": ("works in a hospital", "a doctor helps sick people get better."),
    "teacher": ("works in a school", "a teacher helps children learn to read and write."),
    "pilot": ("flies a plane", "a pilot sits at the front of the plane."),
    "farmer": ("grows wheat", "a farmer gets up before the sun."),
    "nurse": ("cares for sick people", "a nurse is kind and patient."),
    "firefighter": ("puts out fires", "a firefighter is brave and not afraid of fire."),
    "builder": ("builds houses", "a builder wears a hard hat."),
    "postman": ("brings letters", "a postman walks from door to door."),
    "fisherman": ("catches fish", "a fisherman goes out to sea in a small boat."),
    "chef": ("cooks food in a restaurant", "a chef wears a white hat."),
    "vet": ("looks after sick animals", "a vet is a doctor for animals."),
}

# food: the canonical sentence as (prompt, answer, rest), a sentence
FOODS = {
    "bread": (("bread is made from", "flour", ""), "fresh bread smells wonderful."),
    "cheese": (("cheese is made from", "milk", ""), "milk comes from cows and goats."),
    "honey": (("honey is made by", "bees", ""), "honey is sweet and sticky."),
    "butter": (("butter is made from", "cream", ""), "butter is soft and yellow."),
    "jam": (("jam is made from", "fruit", "and sugar"), "jam tastes good on toast."),
    "popcorn": (("popcorn is made from", "corn", ""), "popcorn pops in a hot pan."),
    "chocolate": (("chocolate is made from", "cocoa", "beans"), "chocolate melts in the sun."),
    "juice": (("orange juice is made from", "oranges", ""), "a glass of juice is good at breakfast."),
}
KITCHEN = ["the kitchen is the warmest room in the house.", "in the kitchen there is a stove, an oven and a sink.",
           "we keep milk and butter cold in the fridge.", "we boil potatoes in a big pot.",
           "we fry eggs in a pan with a little oil.", "we bake a cake in the oven.",
           "we stir the soup with a wooden spoon.", "we chop onions and garlic on a board.",
           "we slice a tomato and a cucumber for a salad.", "a little salt and pepper makes food tasty.",
           "we mix flour, sugar, milk and eggs in a bowl to make pancakes.", "rice and pasta are cooked in hot water.",
           "a good cook follows a recipe.", "fresh vegetables are good for you.", "after the meal we wash the plates and cups.",
           "dough is made of flour and water.", "hot food can burn your mouth, so let it cool a little.",
           "meat and fish must be cooked well.", "a rich sauce makes a dish taste better.", "cream is thick and white.",
           "dinner tonight is hot soup with bread.", "the whole family helps to cook on sunday.",
           "we add a little salt to the soup.", "cooking takes time, so we cook the soup slowly.",
           "boiling water is very hot, so we put the eggs in gently.", "we put a lid on the pot.",
           "thin pasta cooks quickly.", "pepper is a hot spice.", "soup with cream is soft and creamy.",
           "water and milk are liquid, but ice is not.", "we peel a banana before we eat it.",
           "be careful when cutting with a sharp knife.", "never touch a hot stove.",
           "a pot of water boils when it is very hot.", "cooking together is fun.",
           "the best way to learn is to cook with a friend."]
MORNING = ["in the morning people wake up and get out of bed.", "they wash their faces and brush their teeth.",
           "then they put on their clothes.", "breakfast is the first meal of the day.",
           "many people drink tea or coffee at breakfast.", "children pack their bags for school.",
           "grown ups go to work by bus, by train or by car.", "the streets are busy in the morning."]
EVENING = ["after school the children are hungry.", "in the evening families eat dinner together.", "after dinner someone washes the dishes.",
           "some people read a book or listen to music.", "children take a warm bath.",
           "at bedtime a parent reads a story.", "at night people go to sleep."]

PROBED = {  # which table facts become pretraining probes
    "sound": ["cow", "dog", "cat", "sheep", "pig", "duck", "horse", "owl"],
    "food": ["rabbit", "monkey", "panda", "bear", "mouse", "cat"],
    "home": ["camel", "monkey", "fox", "whale", "frog"],
    "legs": ["spider", "ant", "snake"],
    "capital": ["france", "spain", "italy", "germany", "japan", "egypt", "china", "russia", "greece", "peru"],
    "known": ["egypt", "greece"],
    "colour": ["the sky", "grass", "a banana", "snow", "a tomato"],
    "day": ["monday", "wednesday", "friday"],
    "month": ["january", "march", "june"],
    "season": ["winter", "summer"],
    "after_season": ["autumn"],
    "tool": ["saw", "shovel", "hammer", "broom"],
    "job": ["baker", "doctor", "teacher", "pilot"],
    "made": ["bread", "cheese", "honey"],
}


def season_of(month):
    return next(s for s in SEASONS if month in SEASONS[s][1])


def a(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


def say(prompt, answer, rest=""):
    """A canonical fact sentence: the prompt, the answer, then the rest."""
    return " ".join(p for p in (prompt, answer, rest) if p) + "."


def split_last(phrase):
    """'lives in the desert' -> ('lives in the', 'desert')."""
    head, _, last = phrase.rpartition(" ")
    return head, last


# One (prompt, answer, rest) triple per fact; every sentence and every probe comes from these.
def animal_facts(name):
    kind, sound, food, home, legs, looks, own = ANIMALS[name]
    facts = {"food": (f"the {name} eats", food, ""), "home": (f"the {name} {split_last(home)[0]}", split_last(home)[1], ""),
             "legs": (f"the {name} has", legs, "legs")}
    if sound:
        facts["sound"] = (f"the {name} says", sound, "")
    return facts


def probed_kinds(name):
    """The kinds of fact ("sound", "food", ...) that are probed for this animal."""
    return [k for k in animal_facts(name) if name in PROBED[k]]


def country_facts(c):
    capital, continent, lang, known, food, own = COUNTRIES[c]
    return {"capital": (f"the capital of {c} is", capital, ""), "known": (f"{capital} is known for its", known, ""),
            "lang": (f"people in {c} speak", lang, "")}


def pair_fact(kind, items, i):
    return (f"the {kind} after {items[i]} is", items[(i + 1) % len(items)], "")


def pretrain_probe_triples():
    t = []
    t += [animal_facts(n)[k] for k in ("sound", "food", "home", "legs") for n in PROBED[k]]
    t += [country_facts(c)[k] for k in ("capital", "known") for c in PROBED[k]]
    t += [(f"the colour of {x} is", COLOURS[x][0], "") for x in PROBED["colour"]]
    t += [pair_fact("day", DAYS, DAYS.index(d)) for d in PROBED["day"]]
    t += [pair_fact("month", MONTHS, MONTHS.index(m)) for m in PROBED["month"]]
    t += [(f"in {s} the weather is", SEASONS[s][0], "") for s in PROBED["season"]]
    t += [pair_fact("season", list(SEASONS), list(SEASONS).index(s)) for s in PROBED["after_season"]]
    t += [(f"you {TOOLS[x][0]} with a", x, "") for x in PROBED["tool"]]
    t += [(f"{a(j)} {split_last(JOBS[j][0])[0]}", split_last(JOBS[j][0])[1], "") for j in PROBED["job"]]
    t += [FOODS[f][0] for f in PROBED["made"]]
    return t


# ---------------------------------------------------------------------------
# Building documents.  A document is an opening, a shuffled body and maybe a
# closing line.  Some documents open with a fact instead: the probe harness
# reads each prompt right after <eot>, so facts must also start documents.
# ---------------------------------------------------------------------------

def document(rng, openers, facts, extras, closers=(), n_extra=(1, 2), leads=None):
    """Opening, shuffled facts and extras, maybe a closing line; `leads` are the facts that may open it."""
    spare = rng.sample(extras, len(extras))  # extras in a random order, used from the front
    k = rng.randint(*n_extra)
    body = list(facts) + spare[:k]
    rng.shuffle(body)
    leads = [f for f in (leads or facts) if f in facts]
    if leads and rng.random() < 0.4:  # a fact opens the document, as in the probe harness
        first = rng.choice(leads)
        body.remove(first)
        body.insert(0, first)
    else:
        body.insert(0, rng.choice(openers))
    if closers and rng.random() < 0.5:
        body.append(rng.choice(closers))
    while len(body) < 3:  # a document has at least 3 sentences
        body.append(spare[k])
        k += 1
    return " ".join(body[:8])


def animal_doc(rng, name):
    kind, sound, food, home, legs, looks, own = ANIMALS[name]
    probed = probed_kinds(name)  # probed facts are always stated, the others most of the time
    facts = [say(*f) for k, f in animal_facts(name).items() if k in probed or rng.random() < 0.7]
    openers = [f"let us learn about the {name}.", f"this is a little story about the {name}.",
               f"here are some facts about the {name}.", f"the {name} is {a(kind)}.", f"many children like the {name}."]
    closers = [f"it is fun to watch the {name}.", "what a wonderful animal.", "we should always be kind to animals.",
               f"now you know a lot about the {name}."]
    leads = [say(*animal_facts(name)[k]) for k in probed]
    return document(rng, openers, facts, own + [f"{looks}.", f"the {name} is {a(kind)}."], closers, (0, 1), leads)


def country_doc(rng, c):
    capital, continent, lang, known, food, own = COUNTRIES[c]
    chance = {"capital": 0.95, "known": 0.6, "lang": 0.4}
    facts = [say(*f) for k, f in country_facts(c).items() if rng.random() < chance[k]]
    openers = [f"let us visit {c}.", f"{c} is a country in {continent}.", f"this is a short story about {c}.",
               f"many people like to travel to {c}."]
    extras = [own, f"people in {c} like to eat {food}.", f"{c} is a country in {continent}.",
              f"{capital} is a lovely city.", f"the flag of {c} flies over {capital}."]
    return document(rng, openers, facts, extras, ["what a lovely place to visit.", "maybe one day you will go there too."])


def city_doc(rng, c):
    capital, continent, lang, known, food, own = COUNTRIES[c]
    facts = [say(*country_facts(c)["known"])]
    if rng.random() < 0.7:
        facts.append(say(*country_facts(c)["capital"]))
    openers = [f"{capital} is the capital of {c}.", f"welcome to {capital}.", f"today we walk around {capital}."]
    extras = [f"{capital} is a big and busy city.", f"many visitors come to {capital} every year.",
              f"the streets of {capital} are full of people.", f"the people of {capital} speak {lang}."]
    return document(rng, openers, facts, extras, ["it is a city full of life.", "we hope to come back soon."])


def colour_doc(rng):
    others = [x for x in COLOURS if x not in PROBED["colour"]]
    things = rng.sample(PROBED["colour"], 2) + rng.sample(others, rng.randint(0, 1))
    facts = [say(f"the colour of {x} is", COLOURS[x][0]) for x in things]
    extras = [COLOURS[x][1] for x in things] + COLOUR_MIXING
    return document(rng, ["let us talk about colours.", "the world is full of colours.",
                          "here are some colours you can see every day."], facts, extras, ["we all have a favourite colour."])


def calendar_doc(rng):
    if rng.random() < 0.4:
        start = rng.randrange(7)
        facts = [say(*pair_fact("day", DAYS, (start + k) % 7)) for k in range(rng.randint(2, 3))]
        extras = ["there are seven days in a week.", "the days of the week are " + ", ".join(DAYS[:-1]) + " and sunday.",
                  "saturday and sunday are the weekend."] + DAY_LIFE
        return document(rng, ["let us learn the days of the week.", "a week has seven days."], facts, extras)
    start = rng.randrange(12)
    facts = [say(*pair_fact("month", MONTHS, (start + k) % 12)) for k in range(3)]
    extras = ["there are twelve months in a year.", "the year begins in january and ends in december.",
              "the months of the year are " + ", ".join(MONTHS[:-1]) + " and december."]
    extras += [f"{MONTHS[(start + k) % 12]} is a month in {season_of(MONTHS[(start + k) % 12])}." for k in range(2)]
    return document(rng, ["let us learn the months of the year.", "a year has twelve months."], facts, extras)


def season_doc(rng, s):
    weather, months, own = SEASONS[s]
    facts = [say(f"in {s} the weather is", weather)]
    facts.append(say(*pair_fact("season", list(SEASONS), list(SEASONS).index(s))))
    extras = own + [f"the months of {s} are {months}.", "there are four seasons in a year."] + rng.sample(WEATHER, 2)
    return document(rng, [f"let us talk about {s}.", f"{s} is one of the four seasons.", f"many people love {s}."],
                    facts, extras, ["every season has something special."])


def tool_doc(rng, tool):
    use, own = TOOLS[tool]
    return document(rng, [f"let us look at {a(tool)}.", f"{a(tool)} is a simple tool.", f"this is {a(tool)}."],
                    [say(f"you {use} with a", tool)], [own] + TOOL_PLACES, ["tools make our work easier."])


def job_doc(rng, job):
    does, own = JOBS[job]
    return document(rng, [f"let us meet {a(job)}.", f"many people work as {a(job)}.", f"this is a story about {a(job)}."],
                    [f"{a(job)} {does}."], [own, "every job is important.", f"{a(job)} works hard every day."],
                    ["thank you to all the people who work for us."])


def food_doc(rng, food):
    fact, own = FOODS[food]
    return document(rng, [f"let us talk about {food}.", f"many people enjoy {food}.", f"{food} is a tasty food."],
                    [say(*fact)], [own] + rng.sample(KITCHEN, 2), ["food is better when we share it."])


def routine_doc(rng):
    lines = MORNING if rng.random() < 0.6 else EVENING
    keep = sorted(rng.sample(range(len(lines)), rng.randint(3, 5)))  # sorted: a routine happens in order
    return " ".join(lines[i] for i in keep)


def kitchen_doc(rng):
    return " ".join(["let us go into the kitchen."] + rng.sample(KITCHEN, rng.randint(3, 5)))


def with_intro(rng, intro, facts):
    """The intro first, or sometimes second so that a fact opens the document."""
    return [intro] + facts if rng.random() < 0.6 else facts[:1] + [intro] + facts[1:]


def mixed_doc(rng, trip):
    """A visit to the farm, the zoo or the woods, or a trip round the world: facts about many subjects."""
    if trip == "farm":
        names = rng.sample(FARM, 4)
        facts = [say(*animal_facts(n)[rng.choice(["sound", "sound", "food"])]) for n in names]
        return " ".join(with_intro(rng, "today we visit the farm.", facts) + ["what a happy day."])
    if trip in ("zoo", "woods"):
        names = rng.sample(ZOO if trip == "zoo" else WOODS, 4)
        facts = [say(*animal_facts(n)[rng.choice(probed_kinds(n) or list(animal_facts(n)))]) for n in names]
        return " ".join(with_intro(rng, f"today we visit the {trip}.", facts) + ["we had a great time."])
    cs = rng.sample(list(COUNTRIES), 3)  # a trip round the world
    out = [f"first we fly to {cs[0]}."]
    for i, c in enumerate(cs):
        if i:
            out.append(f"then we travel to {c}.")
        out.append(say(*country_facts(c)["capital"]))
    return " ".join(out + ["what a long trip."])


def quiz_doc(rng, triples, i, outro):
    """A few probed facts; the i-th quiz opens with the i-th fact, so every probe starts some documents."""
    first = say(*triples[i % len(triples)])
    others = rng.sample([say(*t) for t in triples if say(*t) != first], rng.randint(2, 3))
    return " ".join([first] + others + [outro])


def n_docs(subject, *kinds):
    """Subjects that carry probed facts get many documents, the rest a few (for variety)."""
    return 18 if any(subject in PROBED[k] for k in kinds) else 6


def make_pretrain(rng):
    docs = []
    for name in ANIMALS:
        docs += [animal_doc(rng, name) for _ in range(n_docs(name, "sound", "food", "home", "legs"))]
    for c in COUNTRIES:
        docs += [country_doc(rng, c) for _ in range(n_docs(c, "capital") * 2 // 3)]
        docs += [city_doc(rng, c) for _ in range(12 if c in PROBED["known"] else 4)]
    docs += [colour_doc(rng) for _ in range(80)] + [calendar_doc(rng) for _ in range(160)]
    for s in SEASONS:
        docs += [season_doc(rng, s) for _ in range(24)]
    for t in TOOLS:
        docs += [tool_doc(rng, t) for _ in range(n_docs(t, "tool"))]
    for j in JOBS:
        docs += [job_doc(rng, j) for _ in range(n_docs(j, "job"))]
    for f in FOODS:
        docs += [food_doc(rng, f) for _ in range(n_docs(f, "made"))]
    docs += [routine_doc(rng) for _ in range(50)] + [kitchen_doc(rng) for _ in range(40)]
    docs += [mixed_doc(rng, trip) for trip in ["farm", "zoo", "woods", "world"] for _ in range(25)]
    probes = pretrain_probe_triples()
    docs += [quiz_doc(rng, probes, i, "every child can learn these things.") for i in range(3 * len(probes))]
    rng.shuffle(docs)
    return docs


# ---------------------------------------------------------------------------
# Cooking facts.  Same style and mostly the same words as the pretraining text,
# plus a few dozen new words (dishes, ingredients, techniques, tools) that the
# fine-tuned model has to learn.  Each fact is (prompt, answer, rest).
# ---------------------------------------------------------------------------

# dish: where it comes from (None: not stated), its main fact, sentences of its own
DISHES = {
    "risotto": ("italy", ("risotto is made with", "arborio", "rice"), ["risotto is soft and creamy.", "you stir risotto slowly and add warm water a little at a time.", "butter and cheese go into risotto at the end."]),
    "paella": ("spain", ("paella is cooked with", "saffron", ""), ["people make paella in a wide flat pan.", "paella is full of rice, fish and vegetables.", "saffron makes the rice bright yellow."]),
    "pesto": ("italy", ("pesto is made from", "basil", "leaves, garlic, cheese and oil"), ["pesto is a green sauce.", "people eat pesto with pasta.", "basil smells fresh and sweet."]),
    "guacamole": ("mexico", ("guacamole is made from", "avocado", "and onions"), ["guacamole is soft and green.", "an avocado has one big seed in the middle.", "people eat guacamole with bread or beans."]),
    "hummus": (None, ("hummus is made from", "chickpeas", "and oil"), ["hummus is smooth and creamy.", "people eat hummus with warm bread.", "chickpeas are small round beans."]),
    "tofu": ("china", ("tofu is made from", "soybeans", ""), ["tofu is soft and white.", "tofu tastes like the sauce around it.", "tofu is good food for people that eat no meat."]),
    "gnocchi": ("italy", ("gnocchi is made from", "potatoes", "and flour"), ["gnocchi are small soft dumplings.", "you boil gnocchi for a short time.", "gnocchi taste good with butter and cheese."]),
    "sushi": ("japan", ("sushi is wrapped in", "nori", ""), ["sushi has rice and fresh fish.", "nori is thin and dark green and comes from the sea.", "the rice for sushi is a little sweet."]),
    "ricotta": ("italy", ("ricotta is made from", "whey", ""), ["ricotta is a soft white cheese.", "whey is the thin water that comes from milk when people make cheese.", "ricotta is lovely with pasta and with fruit."]),
    "tiramisu": ("italy", ("tiramisu is made with", "mascarpone", "and coffee"), ["tiramisu is a sweet treat.", "mascarpone is a rich and creamy cheese.", "tiramisu goes in the fridge before people eat it."]),
    "kimchi": ("korea", ("kimchi is made from", "cabbage", ""), ["kimchi is sour and full of spice.", "kimchi sits in a cool place for many days.", "people eat kimchi with rice."]),
    "ramen": ("japan", ("ramen is made with", "noodles", "in a hot soup"), ["people eat ramen from a deep bowl.", "an egg often sits on top of ramen.", "ramen is a warm meal on a cold day."]),
    "tzatziki": ("greece", ("tzatziki is made with", "yogurt", "and cucumber"), ["tzatziki is a cool white sauce.", "tzatziki has garlic in it.", "people eat tzatziki with bread and meat."]),
    "curry": ("india", ("curry gets its yellow colour from", "turmeric", ""), ["curry is a warm dish full of spice.", "people eat curry with rice or bread.", "turmeric is a yellow spice."]),
    "tempura": ("japan", ("tempura is covered in", "batter", ""), ["tempura is cooked in hot oil until it is golden.", "batter is a mix of flour, water and eggs.", "people cook fish and vegetables as tempura."]),
    "gazpacho": ("spain", ("gazpacho is made from", "tomatoes", ""), ["people eat gazpacho cold.", "gazpacho is lovely on a hot summer day.", "there is cucumber and garlic in gazpacho too."]),
    "meringue": ("france", ("meringue is made from", "eggs", "and sugar"), ["meringue is sweet and white.", "you bake meringue for a long time in a cool oven.", "meringue is a lovely sweet treat."]),
}
ORIGIN_PROBES = ["risotto", "paella", "tempura", "tzatziki"]
# cooking probe answers that are ordinary words; every other answer must be new to the model
FAMILIAR_ANSWERS = ["italy", "spain", "japan", "greece", "potatoes", "tomatoes", "eggs"]

# technique: the description that names it ("<description> <technique>."), sentences of its own
TECHNIQUES = {
    "julienne": ("cutting vegetables into thin strips is called", ["thin strips of carrot look lovely in a salad.", "you must be careful with the sharp knife."]),
    "braising": ("cooking meat slowly in a covered pot is called", ["the pot sits in the oven for a long time.", "cooking for a long time makes meat soft."]),
    "sauteing": ("cooking food quickly in a little hot oil is called", ["you stir the food all the time.", "onions and garlic cook very fast this way."]),
    "poaching": ("cooking an egg gently in hot water is called", ["the water must not boil too hard.", "the egg is soft in the middle."]),
    "steaming": ("cooking food over boiling water is called", ["the food sits over the pot, not in the water.", "vegetables keep their bright colour this way."]),
    "simmering": ("cooking soup slowly so that it never boils is called", ["you stir the soup from time to time.", "the soup cooks for a long time and gets rich."]),
    "caramelizing": ("cooking sugar until it is brown is called", ["the sugar smells sweet and warm.", "you must watch the pan so the sugar will not burn."]),
    "marinating": ("soaking meat in a tasty liquid before cooking is called", ["the meat sits in the fridge for a long time.", "lemon, oil and garlic make a good liquid for it."]),
    "grilling": ("cooking food over an open fire is called", ["the food gets dark on the outside.", "people like to cook this way outside in summer."]),
}

# kitchen tool: the fact that names it, sentences of its own
KITCHEN_TOOLS = {
    "colander": (("you drain pasta with a", "colander", ""), ["a colander is a bowl with many small holes.", "the water falls through the holes."]),
    "grater": (("you grate cheese with a", "grater", ""), ["a grater has many small sharp holes.", "cheese from a grater melts quickly on hot food."]),
    "whisk": (("you whisk eggs with a", "whisk", ""), ["a whisk has a long handle.", "a whisk can make cream thick."]),
    "spatula": (("you turn pancakes with a", "spatula", ""), ["a spatula is wide and flat.", "a spatula goes under the food in a hot pan."]),
    "peeler": (("you peel potatoes with a", "peeler", ""), ["a peeler cuts the thin skin from potatoes and carrots.", "a peeler is small and very useful."]),
    "wok": (("you stir fry vegetables in a", "wok", ""), ["a wok is a deep round pan.", "a wok gets very hot very fast."]),
    "rolling pin": (("you roll out dough with a", "rolling", "pin"), ["a rolling pin is long, round and made of wood.", "you roll the dough until it is thin and flat."]),
}


def origin_fact(dish):
    return (f"{dish} comes from", DISHES[dish][0], "")


def cooking_probe_triples():
    t = [DISHES[d][1] for d in DISHES] + [origin_fact(d) for d in ORIGIN_PROBES]
    t += [(desc, tech, "") for tech, (desc, own) in TECHNIQUES.items()]
    return t + [fact for fact, own in KITCHEN_TOOLS.values()]


COOK_CLOSERS = ["enjoy your meal.", "cooking is fun for the whole family.", "now you can make it at home.",
                "good food makes people happy."]


def dish_doc(rng, dish):
    origin, main, own = DISHES[dish]
    facts = [say(*main)] + ([say(*origin_fact(dish))] if origin else [])
    openers = [f"let us cook {dish}.", f"today in the kitchen we make {dish}.", f"this is a short story about {dish}.",
               f"many people love {dish}."]
    return document(rng, openers, facts, own, COOK_CLOSERS, (0, 1))


def technique_doc(rng, tech):
    desc, own = TECHNIQUES[tech]
    return document(rng, ["let us learn a way to cook.", "every cook should know this.",
                          "here is a useful way to cook."], [say(desc, tech)], own, COOK_CLOSERS, (0, 1))


def kitchen_tool_doc(rng, tool):
    fact, own = KITCHEN_TOOLS[tool]
    return document(rng, ["every kitchen should have good tools.", "let us look around the kitchen.",
                          f"this is {a(tool)}."], [say(*fact)], own, COOK_CLOSERS, (0, 1))


def cooking_mix_doc(rng, kind):
    """A cooking class, a dinner menu, a food trip or a busy kitchen: several facts at once."""
    if kind == "class":
        picks = rng.sample(list(TECHNIQUES), 3)
        return " ".join(["today we learn about cooking."] + [say(TECHNIQUES[t][0], t) for t in picks])
    if kind == "menu":
        picks = rng.sample(list(DISHES), 3)
        return " ".join(["tonight we make dinner for our friends."] + [say(*DISHES[d][1]) for d in picks] + ["we are all hungry."])
    if kind == "trip":
        picks = rng.sample([d for d in DISHES if DISHES[d][0]], 3)
        return " ".join(["food from around the world is wonderful."] + [say(*origin_fact(d)) for d in picks])
    picks = rng.sample(list(KITCHEN_TOOLS), 3)
    return " ".join(["the kitchen is busy tonight."] + [say(*KITCHEN_TOOLS[t][0]) for t in picks])


def make_cooking(rng):
    docs = []
    for d in DISHES:
        docs += [dish_doc(rng, d) for _ in range(13)]
    for t in TECHNIQUES:
        docs += [technique_doc(rng, t) for _ in range(12)]
    for t in KITCHEN_TOOLS:
        docs += [kitchen_tool_doc(rng, t) for _ in range(12)]
    docs += [cooking_mix_doc(rng, k) for k in ["class", "menu", "trip", "kitchen"] for _ in range(8)]
    probes = cooking_probe_triples()
    docs += [quiz_doc(rng, probes, i, "every cook can learn these things.") for i in range(3 * len(probes))]
    rng.shuffle(docs)
    return docs


# ---------------------------------------------------------------------------
# Sport facts: a second fine-tuning domain, for serving several adapters on one
# base.  Same style as cooking; its new words are games, gear, moves and teams.
# It has its own seeded generator (SPORT_SEED), created after the other two
# corpora are drawn, so adding it left pretrain.txt and cooking.txt unchanged.
# Two cooking words (ramen, noodles) appear here on purpose: both adapters then
# bring a row for the same new word, the case experiment/serving/server.py handles.
# ---------------------------------------------------------------------------

SPORT_SEED = 4321

# game: (its main fact), sentences of its own
GAMES = {
    "cricket": (("in cricket you hit the ball with a", "bat", ""), ["cricket is played on a wide green field.", "a game of cricket can last all day."]),
    "tennis": (("in tennis you hit the ball with a", "racket", ""), ["tennis is played on a court with a net.", "two or four players play tennis."]),
    "hockey": (("in hockey you hit the puck with a", "stick", ""), ["hockey is played on the ice.", "the players move fast on their skates."]),
    "rugby": (("in rugby you carry an oval", "ball", ""), ["rugby is a rough game.", "the players run and push very hard."]),
    "golf": (("in golf you hit the ball into a", "hole", ""), ["golf is played on a long quiet course.", "the ball is small and white."]),
    "badminton": (("in badminton you hit a", "shuttlecock", ""), ["badminton is played with a high net.", "the shuttlecock has light feathers."]),
    "baseball": (("in baseball the player that throws the ball is the", "pitcher", ""), ["baseball is popular in america.", "the batter tries to hit the ball very far."]),
    "volleyball": (("in volleyball the ball must fly over the", "net", ""), ["volleyball is played by two teams of six.", "people play volleyball on the beach in summer."]),
    "skiing": (("in skiing you slide down the", "slope", ""), ["skiing is a winter sport.", "you need warm clothes for skiing."]),
    "judo": (("in judo the players wear a white", "gi", ""), ["judo comes from japan.", "in judo you throw the other player to the mat."]),
    "fencing": (("in fencing you hold a thin", "sword", "called a foil"), ["fencing is fast and careful.", "the players wear a mask over the face."]),
    "marathon": (("a marathon is a very long", "race", ""), ["runners train for months before a marathon.", "people cheer for the runners along the road."]),
}

# role or thing: the description that names it ("<description> <word>."), sentences of its own
SPORT_WORDS = {
    "referee": ("the person that keeps the rules of a game is the", ["the referee blows a loud whistle.", "everyone must listen to the referee."]),
    "goalkeeper": ("the player that guards the goal is the", ["the goalkeeper can catch the ball with both hands.", "the goalkeeper stands in front of the net."]),
    "stadium": ("a huge building where thousands watch a game is a", ["the stadium is full of happy fans.", "the fans sing and shout in the stadium."]),
    "trophy": ("the winners of the final lift a shiny", ["the trophy is made of gold.", "the team is proud of its trophy."]),
    "whistle": ("the referee starts the match with a", ["the sound is short and loud.", "everyone hears the sound across the field."]),
    "dribbling": ("running with the ball at your feet is called", ["you keep the ball close to your feet.", "good players can run fast with the ball."]),
    "sprinting": ("running as fast as you can for a short way is called", ["the runners push hard with their legs.", "the race is over in a few seconds."]),
    "stretching": ("making your muscles long before a game is called", ["it keeps your legs safe.", "every player does it before the match."]),
    "penalty": ("a free shot at the goal after a foul is a", ["the whole stadium goes quiet.", "the goalkeeper waits on the line."]),
    "coach": ("the person that trains the team is the", ["the coach plans every training.", "the coach talks to the players before the match."]),
}
SPORT_FAMILIAR_ANSWERS = ["ball", "hole", "net", "race", "stick"]


def sport_probe_triples():
    t = [fact for fact, own in GAMES.values()]
    return t + [(desc, word, "") for word, (desc, own) in SPORT_WORDS.items()]


SPORT_CLOSERS = ["sport keeps us fit and happy.", "what a great match.", "the fans go home happy.",
                 "after the match the players eat ramen with noodles."]


def game_doc(rng, game):
    fact, own = GAMES[game]
    openers = [f"let us play {game}.", f"today at the club we play {game}.", f"this is a short story about {game}.",
               f"many people love {game}."]
    return document(rng, openers, [say(*fact)], own, SPORT_CLOSERS, (0, 1))


def sport_word_doc(rng, word):
    desc, own = SPORT_WORDS[word]
    return document(rng, ["let us learn about sport.", "every player should know this.", "here is a word from sport."],
                    [say(desc, word)], own, SPORT_CLOSERS, (0, 1))


def make_sport(rng):
    docs = []
    for g in GAMES:
        docs += [game_doc(rng, g) for _ in range(13)]
    for w in SPORT_WORDS:
        docs += [sport_word_doc(rng, w) for _ in range(12)]
    probes = sport_probe_triples()
    docs += [quiz_doc(rng, probes, i, "every player can learn these things.") for i in range(3 * len(probes))]
    rng.shuffle(docs)
    return docs


# ---------------------------------------------------------------------------
# Checks.  Any failure stops the script with a message: better no corpus than
# a corpus whose probes cannot be learned.
# ---------------------------------------------------------------------------

def words(text):
    """The course tokenizer's split: lower-case words and single punctuation marks."""
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())


def fail(message):
    raise SystemExit(f"make_corpora.py: check failed: {message}")


def occurrences(tokens, prompt):
    """Every next token after the prompt's word sequence, and how often it opens a document."""
    p = words(prompt)
    nexts, at_start = [], 0
    for i in range(len(tokens) - len(p)):
        if tokens[i:i + len(p)] == p:
            nexts.append(tokens[i + len(p)])
            at_start += i == 0 or tokens[i - 1] == "\n"
    return nexts, at_start


def doc_tokens(docs):
    """All documents as one token stream, with a "\n" marker between documents."""
    out = []
    for d in docs:
        out += words(d) + ["\n"]
    return out


def check_corpus(name, docs, limits):
    text = "\n\n".join(docs)
    bad = sorted(set(re.findall(r"[^a-z ,.\n]", text)))
    if bad:
        fail(f"{name} has forbidden characters {bad}")
    for d in docs:
        n = d.count(".")
        if not (3 <= n <= 8 and d.endswith(".") and "  " not in d):
            fail(f"{name}: a document needs 3 to 8 sentences, got {n}: {d!r}")
    n_words = sum(1 for w in words(text) if w.isalpha())
    vocab = sorted({w for w in words(text) if w.isalpha()})
    for label, value, (low, high) in (("documents", len(docs), limits[0]), ("words", n_words, limits[1]),
                                      ("distinct words", len(vocab), limits[2])):
        if not low <= value <= high:
            fail(f"{name} has {value} {label}, wanted {low} to {high}")
    return n_words, vocab


def check_probes(name, triples, tokens, minimum):
    counts = []
    for prompt, answer, _ in triples:
        nexts, at_start = occurrences(tokens, prompt)
        good = nexts.count(answer)
        if good < minimum:
            fail(f"{name} probe {prompt!r} -> {answer!r} occurs {good} times, needs {minimum}")
        others = sorted(set(nexts) - {answer})
        if others:
            fail(f"{name} probe {prompt!r} is sometimes followed by {others}, not only by {answer!r}")
        if at_start < 3:
            fail(f"{name} probe {prompt!r} opens only {at_start} documents; the harness reads prompts after <eot>")
        counts.append(good)
    if len({p for p, _, _ in triples}) != len(triples):
        fail(f"{name} has a repeated probe prompt")
    return min(counts)


def write_all_atomically(files):
    """Write every {filename: text} beside this script under a temporary name of this process, and rename them
    into place only once all are written: a full disk or a file-size limit leaves the old set whole, never a new
    corpus beside old probes. (A kill during the renames, which take microseconds, could still mix the two sets.)
    Two runs at once each rename their own complete copies; the bytes are the same."""
    temporaries = {filename: HERE / f".{filename}.{os.getpid()}.tmp" for filename in files}
    try:
        for filename, text in files.items():
            temporaries[filename].write_text(text, encoding="ascii", newline="\n")
        for filename, tmp in temporaries.items():
            os.replace(tmp, HERE / filename)
    finally:
        for tmp in temporaries.values():
            if tmp.exists():
                tmp.unlink()


def main():
    argparse.ArgumentParser(description="Write pretrain.txt, cooking.txt and their probe files next to this script "
                            "(deterministic: the same bytes every run). Takes no options.").parse_args()
    rng = random.Random(SEED)
    pre_docs, cook_docs = make_pretrain(rng), make_cooking(rng)
    pre_probes, cook_probes = pretrain_probe_triples(), cooking_probe_triples()

    pre_words, pre_vocab = check_corpus("pretrain.txt", pre_docs, ((1500, 3000), (35000, 50000), (500, 1000)))
    cook_words, cook_vocab = check_corpus("cooking.txt", cook_docs, ((400, 900), (8000, 14000), (100, 1000)))
    if not (50 <= len(pre_probes) <= 60 and 30 <= len(cook_probes) <= 40):
        fail(f"want 50-60 pretraining and 30-40 cooking probes, have {len(pre_probes)} and {len(cook_probes)}")
    pre_tokens, cook_tokens = doc_tokens(pre_docs), doc_tokens(cook_docs)
    min_pre = check_probes("pretraining", pre_probes, pre_tokens, 20)
    min_cook = check_probes("cooking", cook_probes, cook_tokens, 15)

    known = set(pre_vocab)
    new_words = [w for w in cook_vocab if w not in known]
    if not 25 <= len(new_words) <= 60:
        fail(f"cooking.txt has {len(new_words)} words absent from pretrain.txt, wanted 25 to 60: {new_words}")
    for prompt, answer, _ in cook_probes:
        if occurrences(pre_tokens, prompt)[0]:
            fail(f"the cooking fact {prompt!r} is also stated in pretrain.txt")
    new_answers = [ans for _, ans, _ in cook_probes if ans not in FAMILIAR_ANSWERS]
    if len(new_answers) * 2 <= len(cook_probes):
        fail(f"most cooking probe answers should be new words, only {len(new_answers)} are")
    for ans in new_answers:
        if ans in known:
            fail(f"the cooking answer {ans!r} should be a new word, but pretrain.txt uses it")
    for prompt, answer, _ in pre_probes:  # fine-tuning text may use general words, never contradict
        wrong = sorted(set(occurrences(cook_tokens, prompt)[0]) - {answer})
        if wrong:
            fail(f"cooking.txt follows the pretraining prompt {prompt!r} with {wrong}, not {answer!r}")

    sport_docs, sport_probes = make_sport(random.Random(SPORT_SEED)), sport_probe_triples()
    sport_words, sport_vocab = check_corpus("sport.txt", sport_docs, ((300, 900), (5000, 14000), (100, 1000)))
    min_sport = check_probes("sport", sport_probes, doc_tokens(sport_docs), 15)
    sport_new = [w for w in sport_vocab if w not in known]
    if len(sport_new) < 20:
        fail(f"sport.txt has {len(sport_new)} words absent from pretrain.txt, wanted at least 20: {sport_new}")
    if len([w for w in sport_new if w not in new_words]) < 20:
        fail("sport.txt needs at least 20 words that neither pretrain.txt nor cooking.txt uses")
    for ans in [ans for _, ans, _ in sport_probes if ans not in SPORT_FAMILIAR_ANSWERS]:
        if ans in known:
            fail(f"the sport answer {ans!r} should be a new word, but pretrain.txt uses it")
    for prompt, answer, _ in pre_probes:
        wrong = sorted(set(occurrences(doc_tokens(sport_docs), prompt)[0]) - {answer})
        if wrong:
            fail(f"sport.txt follows the pretraining prompt {prompt!r} with {wrong}, not {answer!r}")

    files = {filename: "\n\n".join(docs) + "\n"
             for filename, docs in (("pretrain.txt", pre_docs), ("cooking.txt", cook_docs), ("sport.txt", sport_docs))}
    for filename, triples in (("pretrain_probes.json", pre_probes), ("cooking_probes.json", cook_probes),
                              ("sport_probes.json", sport_probes)):
        files[filename] = json.dumps([{"prompt": p, "answer": ans} for p, ans, _ in triples], indent=1) + "\n"
    write_all_atomically(files)

    print(f"pretrain.txt: {len(pre_docs)} documents, {pre_words} words, {len(pre_vocab)} distinct words")
    print(f"cooking.txt:  {len(cook_docs)} documents, {cook_words} words, {len(cook_vocab)} distinct words")
    print(f"cooking words absent from pretrain.txt ({len(new_words)}): {' '.join(new_words)}")
    print(f"sport.txt:    {len(sport_docs)} documents, {sport_words} words, {len(sport_vocab)} distinct words")
    print(f"sport words absent from pretrain.txt ({len(sport_new)}): {' '.join(sport_new)}")
    print(f"sport probes: {len(sport_probes)} (each stated at least {min_sport} times)")
    print(f"probes: {len(pre_probes)} pretraining (each stated at least {min_pre} times), "
          f"{len(cook_probes)} cooking (each stated at least {min_cook} times)")
    longest = max(pre_probes + cook_probes, key=lambda t: len(words(t[0])))[0]
    print(f"longest probe prompt: {len(words(longest))} words ({longest!r})")


if __name__ == "__main__":
    try:
        main()
    except OSError as error:  # a full disk, a read-only folder, a file-size limit: one line, exit 2, the old files intact
        print(f"error: could not write the corpora beside {HERE} ({error.strerror or error}); the previous files are "
              "unchanged; free some space or fix the folder's permissions", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: every file is the old one or the new one, none half-written", file=sys.stderr)
        sys.exit(130)
